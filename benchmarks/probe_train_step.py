"""Where a training step's time goes on one GPU: a development probe for the recipes'
throughput (issue 18), not a benchmark of record.

    python benchmarks/probe_train_step.py --out DIR [--parts tc-before tc-plain gpt2 ...]

tc-before    the text-classify recipe (BERT-base, T=128, micro-batch 32, compiled bf16),
tc-after     the same with CUDA graphs, and
tc-plain     its plain loop, each under torch.profiler for a few steady steps: per-step
             host (CPU) time against device (kernel) time, host-device syncs and the ops
             that caused them, the top host-side ops, dynamo's graph and recompile counts.
ic           the image recipe (ResNet-50, micro-batch 256) under torch.profiler, the same
             summaries as tc-before (host gaps; the prefetch thread's gather and pinning).
tc-variants  the plain BERT loop with the recipe's real padding mask, with the recipe's
             step end (clip + schedule), and with CUDA graphs (mode="reduce-overhead").
gpt2         the plain GPT-2 124M loop at micro-batch 32 and 64 with FlashAttention and
             with cuDNN attention (fresh compile each), plus the top kernels of one step.

Everything goes to DIR: probe.json (numbers), *.txt (profiler tables), *.json.gz traces.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

SYNC_CALLS = (
    "cudaStreamSynchronize",
    "cudaDeviceSynchronize",
    "cudaEventSynchronize",
    "cudaMemcpy",
    "cudaMemcpyAsync",
)


def _reset() -> None:
    import gc

    import torch

    torch._dynamo.reset()
    gc.collect()
    torch.cuda.empty_cache()


def summarize(prof: Any, steps: int, name: str, out: Path, trace: bool = True) -> dict[str, Any]:
    """Per-step host and device time, syncs with their parent op, top host ops."""
    events = prof.events()
    step_events = [e for e in events if e.name.startswith("ProfilerStep")]
    host_ms = [e.cpu_time_total / 1e3 for e in step_events]
    averages = prof.key_averages()
    device_ms = sum(a.self_device_time_total for a in averages) / 1e3 / max(steps, 1)
    syncs: Counter[str] = Counter()
    for e in events:
        if e.name in SYNC_CALLS or e.name in ("aten::item", "aten::_local_scalar_dense"):
            chain = []
            p = e.cpu_parent
            while p is not None and len(chain) < 4:
                chain.append(p.name)
                p = p.cpu_parent
            syncs[f"{e.name} <- {' <- '.join(chain)}"] += 1
    launches = sum(
        1
        for e in events
        if e.name
        in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")
    )
    graph_launches = sum(1 for e in events if e.name == "cudaGraphLaunch")
    table = averages.table(sort_by="self_cpu_time_total", row_limit=40)
    (out / f"{name}-cpu.txt").write_text(table)
    ktable = averages.table(sort_by="self_device_time_total", row_limit=25)
    (out / f"{name}-gpu.txt").write_text(ktable)
    if trace:
        path = out / f"{name}-trace.json"
        prof.export_chrome_trace(str(path))
        with path.open("rb") as src, gzip.open(f"{path}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        path.unlink()
    top_host = sorted(averages, key=lambda a: -a.self_cpu_time_total)[:15]
    top_dev = sorted(averages, key=lambda a: -a.self_device_time_total)[:10]
    return {
        "steps": steps,
        "host_ms_per_step": [round(x, 2) for x in host_ms],
        "device_kernel_ms_per_step": round(device_ms, 2),
        "kernel_launches_per_step": round(launches / max(steps, 1), 1),
        "graph_launches_per_step": round(graph_launches / max(steps, 1), 1),
        "syncs": dict(syncs.most_common(12)),
        "top_host_ops_ms_per_step": {
            a.key: round(a.self_cpu_time_total / 1e3 / steps, 3) for a in top_host
        },
        "top_kernels_ms_per_step": {
            a.key[:90]: round(a.self_device_time_total / 1e3 / steps, 3) for a in top_dev
        },
    }


def _profiler(wait: int, active: int) -> Any:
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    return profile(
        activities=activities, schedule=schedule(wait=wait, warmup=2, active=active, repeat=1)
    )


def dynamo_counts() -> dict[str, Any]:
    from torch._dynamo.utils import counters

    return {
        "graph_breaks": sum(counters["graph_break"].values()),
        "graph_break_reasons": dict(Counter(counters["graph_break"]).most_common(5)),
        "unique_graphs": counters["stats"].get("unique_graphs", 0),
        "recompiles": dict(counters["recompiles"]) if "recompiles" in counters else {},
    }


# --- text-classify -----------------------------------------------------------------------


def tc_prepare(work: Path, rows: int) -> dict[str, Any]:
    from train_text_classify import make_rows

    from torchrig.recipes.text_classify import data as data_mod
    from torchrig.recipes.text_classify import tokenizer as tok_mod
    from torchrig.recipes.text_classify.rows import read_rows

    shutil.rmtree(work, ignore_errors=True)
    csv_path = make_rows(work / "tickets.csv", rows, (100, 200))
    texts = read_rows(csv_path).texts
    tok = tok_mod.load_or_train(None, texts, work / "tokenizer", 30522)
    cache = work / "cache" / "train.npz"
    enc, _ = data_mod.encode_cached(texts, tok, 128, cache, csv_path, "text")
    return {"csv": csv_path, "tok": tok, "cache": cache, "enc": enc}


def tc_recipe(
    prep: dict[str, Any], work: Path, out: Path, micro: int, graphs: bool
) -> dict[str, Any]:
    import torch

    from torchrig.recipes.classify import loop
    from torchrig.recipes.text_classify.config import from_preset
    from torchrig.recipes.text_classify.train import train

    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    wait, active = 28, 8
    total = wait + 2 + active + 4
    cfg = from_preset(
        "bert-base", data=prep["csv"], out=run, tokenizer=prep["csv"].parent / "tokenizer",
        micro_batch=micro, steps=total, warmup=10, log_every=7, ckpt_every=total, keep=1,
        val_fraction=0.02, compile=True, precision="bf16", device="cuda", export=False,
        tensorboard=False, cuda_graphs=graphs,
    )  # fmt: skip
    prof = _profiler(wait, active)
    original = loop.optimizer_step

    def stepped(*a: Any, **k: Any) -> Any:
        r = original(*a, **k)
        prof.step()
        return r

    loop.optimizer_step = stepped
    torch._dynamo.utils.counters.clear()
    try:
        with prof:
            result = train(cfg, say=lambda line: None)
    finally:
        loop.optimizer_step = original
    recs = [r for r in result.records if "loss" in r]
    # Unprofiled steady intervals: steps 14..28 (after compile, before the profiler).
    steady = [r for r in recs if r["step"] - r["steps_in_interval"] >= 14 and r["step"] <= wait]
    wall = sum(r["interval_s"] for r in steady)
    per_s = sum(r["samples_per_s"] * r["interval_s"] for r in steady) / wall
    shutil.rmtree(run, ignore_errors=True)
    return {
        "sequences_per_s_unprofiled": round(per_s, 1),
        "interval_rates": [r["samples_per_s"] for r in recs],
        "dynamo": dynamo_counts(),
        "profile": summarize(prof, active, f"tc-recipe-b{micro}-graphs{int(graphs)}", out),
    }


def tc_plain(
    prep: dict[str, Any],
    out: Path,
    micro: int,
    variants: list[str],
    mode: str | None = None,
) -> dict[str, Any]:
    """The benchmark's plain loop; variants run on one compile: ones (all-ones mask, the
    benchmark's), padded (the recipe's masks), padded+stepend (clip + LambdaLR)."""
    import torch
    import torch.nn.functional as F

    from torchrig.recipes.text_classify.data import _masked
    from torchrig.recipes.text_classify.model import build_model
    from torchrig.train.optim import build_optimizer, build_scheduler, optimizer_step
    from torchrig.train.precision import resolve_precision

    device = torch.device("cuda")
    resolve_precision("bf16", device)
    tok, enc = prep["tok"], prep["enc"]
    torch.manual_seed(0)
    model = build_model("bert-base", len(tok), [str(i) for i in range(8)], tok.pad_token_id)
    model = model.to(device).train()

    def loss_fn(ids: Any, mask: Any, y: Any) -> Any:
        return F.cross_entropy(model(ids, mask).float(), y)

    fn = torch.compile(loss_fn, mode=mode)
    opt = build_optimizer(model, 5e-5, 0.01, (0.9, 0.999))
    sched = build_scheduler(opt, 10, 1000, 0.1)
    shape = (micro, 128)
    ones = [
        (
            torch.randint(0, len(tok), shape, device=device),
            torch.ones(shape, dtype=torch.int64, device=device),
            torch.randint(0, 8, (micro,), device=device),
        )
        for _ in range(4)
    ]
    padded = []
    for i in range(4):
        rows = slice(i * micro, (i + 1) * micro)
        ids, mask = _masked(enc.ids[rows], enc.lengths[rows])
        label = torch.randint(0, 8, (micro,), device=device)
        padded.append((ids.to(device), mask.to(device), label))

    def run(data: list[Any], stepend: bool, n: int) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            if mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = fn(*data[i % 4])
            loss.backward()
            if stepend:
                optimizer_step(model, opt, sched, None, 1.0)
            else:
                opt.step()
                opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    torch._dynamo.utils.counters.clear()
    t0 = time.perf_counter()
    run(ones, False, 15)
    res: dict[str, Any] = {"mode": mode, "compile_and_warm_s": round(time.perf_counter() - t0, 1)}
    for v in variants:
        data = ones if v == "ones" else padded
        stepend = v.endswith("stepend")
        run(data, stepend, 5)
        times = [run(data, stepend, 20) for _ in range(3)]
        res[v] = round(micro * 20 / statistics.median(times), 1)
    res["dynamo"] = dynamo_counts()
    if mode is None:
        prof = _profiler(2, 8)
        with prof:
            for i in range(12):
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = fn(*padded[i % 4])
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                prof.step()
        res["profile"] = summarize(prof, 8, f"tc-plain-b{micro}", out)
    return res


# --- image-classify ------------------------------------------------------------------------


def ic_recipe(work: Path, out: Path, images: int) -> dict[str, Any]:
    """The image recipe (ResNet-50, 224 px, micro-batch 256, compiled bf16) on a generated
    JPEG tree, profiled like tc_recipe: host time against kernel time per step, the
    syncs, the top host ops (the prefetch thread's gather and pinning show up here)."""
    from train_image_classify import make_tree

    from torchrig.recipes.classify import loop
    from torchrig.recipes.image_classify.config import from_preset
    from torchrig.recipes.image_classify.train import train

    tree, run = work / "images", work / "ic-run"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.rmtree(run, ignore_errors=True)
    made = make_tree(tree, images, 10, 256, 320)
    wait, active = 28, 6
    total = wait + 2 + active + 4
    cfg = from_preset(
        "resnet50", data=tree, out=run, steps=total, warmup=10, micro_batch=256,
        log_every=7, ckpt_every=total, keep=1, compile=True, precision="bf16",
        device="cuda", tensorboard=False, export=False,
    )  # fmt: skip
    prof = _profiler(wait, active)
    original = loop.optimizer_step

    def stepped(*a: Any, **k: Any) -> Any:
        r = original(*a, **k)
        prof.step()
        return r

    loop.optimizer_step = stepped
    try:
        with prof:
            result = train(cfg, say=lambda line: None)
    finally:
        loop.optimizer_step = original
    recs = [r for r in result.records if "loss" in r]
    shutil.rmtree(run, ignore_errors=True)
    shutil.rmtree(tree, ignore_errors=True)
    return {
        "images": made["images"],
        "interval_rates": [r["samples_per_s"] for r in recs],
        "profile": summarize(prof, active, "ic-recipe-b256", out),
    }


# --- GPT-2 --------------------------------------------------------------------------------


def gpt2_plain(micro: int, backend: str, out: Path, steps: int) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from torchrig.recipes.causal_lm.model import build_model

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    torch.cuda.reset_peak_memory_stats()
    vocab, seq = 50257, 1024
    model = build_model("gpt2-124m", vocab, max_seq_len=seq).cuda()
    chosen = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}[backend]

    def loss_fn(x: Any, y: Any) -> Any:
        logits = model(input_ids=x).logits
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))

    fn = torch.compile(loss_fn)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    data = [torch.randint(0, vocab, (micro, seq + 1), device="cuda") for _ in range(4)]

    def step(i: int) -> Any:
        d = data[i % 4]
        with sdpa_kernel([chosen]), torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fn(d[:, :-1], d[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.perf_counter()
    for i in range(6):
        step(i)
    torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    rates = []
    for _ in range(2):
        t0 = time.perf_counter()
        for i in range(steps):
            loss = step(i)
        torch.cuda.synchronize()
        rates.append(micro * seq * steps / (time.perf_counter() - t0))
    prof = _profiler(0, 2)
    with prof:
        for i in range(4):
            step(i)
            prof.step()
    s = summarize(prof, 2, f"gpt2-b{micro}-{backend}", out, trace=False)
    res = {
        "tokens_per_s": [round(r, 1) for r in rates],
        "warm_s": round(warm, 1),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "loss": round(float(loss), 3),
        "device_kernel_ms_per_step": s["device_kernel_ms_per_step"],
        "top_kernels_ms_per_step": s["top_kernels_ms_per_step"],
    }
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--parts", nargs="+", default=["tc-before", "tc-after", "tc-plain", "tc-variants", "gpt2"]
    )
    p.add_argument("--work", type=Path, default=Path("/tmp/probe-work"))
    p.add_argument("--rows", type=int, default=8000)
    p.add_argument("--gpt2", nargs="+", default=["32:cudnn", "64:flash", "64:cudnn"])
    p.add_argument("--gpt2-steps", type=int, default=12)
    p.add_argument("--ic-images", type=int, default=3000, help="JPEGs for the ic part")
    args = p.parse_args()
    import torch
    import transformers

    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "sdp_priority": getattr(torch._C, "_get_sdp_priority_order", lambda: None)(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

    def save() -> None:
        (args.out / "probe.json").write_text(json.dumps(result, indent=2) + "\n")

    def attempt(key: str, fn: Any) -> None:
        t0 = time.perf_counter()
        try:
            result[key] = fn()
        except Exception as exc:  # a probe goes on with its other parts
            import traceback

            result[key] = {"error": repr(exc)[:2000], "trace": traceback.format_exc()[-3000:]}
        print(f"{key}: {time.perf_counter() - t0:.0f} s", flush=True)
        _reset()
        save()

    if "gpt2" in args.parts:
        for spec in args.gpt2:
            micro, backend = spec.split(":")
            attempt(
                f"gpt2_b{micro}_{backend}",
                lambda m=int(micro), b=backend: gpt2_plain(m, b, args.out, args.gpt2_steps),
            )
    if "ic" in args.parts:
        attempt("ic_recipe_b256", lambda: ic_recipe(args.work, args.out, args.ic_images))
    if any(part.startswith("tc") for part in args.parts):
        prep = tc_prepare(args.work, args.rows)
    work = args.work
    if "tc-before" in args.parts:
        attempt("tc_recipe_b32", lambda: tc_recipe(prep, work, args.out, 32, False))
    if "tc-after" in args.parts:
        attempt("tc_recipe_b32_graphs", lambda: tc_recipe(prep, work, args.out, 32, True))
    if "tc-plain" in args.parts:
        variants = ["ones", "padded", "padded+stepend"]
        attempt("tc_plain_b32", lambda: tc_plain(prep, args.out, 32, variants))
    if "tc-variants" in args.parts:
        attempt(
            "tc_plain_b32_cudagraphs",
            lambda: tc_plain(prep, args.out, 32, ["padded", "padded+stepend"], "reduce-overhead"),
        )
    save()
    print(json.dumps(result, indent=1)[-6000:])


if __name__ == "__main__":
    main()
