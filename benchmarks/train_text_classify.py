"""Training throughput of the text-classify recipe on one GPU: the recipe's own loop on a
generated ticket data set, against a plain loop on synthetic token tensors on the GPU.

    # 1 GPU: BERT-base, 128 tokens, compiled bf16, micro-batch 32 (and 64, 128 while the
    # time budget lasts); ~4 minutes on an H100/H200
    python benchmarks/train_text_classify.py
    # this CPU: tiny-bert, a few hundred rows, fp32, no compile (checks the harness)
    python benchmarks/train_text_classify.py --cpu-smoke

Preparation, timed: --rows rows of 100-200 words (keywords of one of 8 intents among
Zipf-distributed filler words from a 50,000-word made-up vocabulary) written to a CSV in
--work; a BERT WordPiece tokenizer of 30,522 tokens trained on it (the recipe's
`tokenizer.load_or_train`); the rows tokenized into the recipe's cache (`data.encode_cached`).

Then, per micro-batch, in this process: `torchrig.recipes.text_classify.train.train`
(the code a user runs, CUDA graphs on where the loop allows them) with that tokenizer,
in a new run folder (the recipe tokenizes into its own cache, seconds), for
--warmup-steps steps (they include torch.compile) and --steps timed steps, one checkpoint
at the end (its time is reported) and the final evaluation on a small hold-out.
Throughput counts only the log intervals after warm-up: sequences over wall time with
the loop's own timing (the log step syncs); the data-wait share and MFU are the loop's.

The baseline (micro-batch 32, and the others with --baseline-all): the same model
(`model.build_model`, 8 labels, the same vocabulary), compiled, bf16 autocast, fused
AdamW, the loop's fp32 cross-entropy, on token ids and an all-ones attention mask made on
the GPU up front — no data path. FACTS.md's plain BERT-base loop (B=32, T=128, no mask):
1,087 sequences/s on an H100; the target for the recipe is ≥ 1,000, and ≥ 0.95× the
plain loop (issue 18). --compare-graphs adds, at the first micro-batch, the recipe with
--no-cuda-graphs and the plain loop with CUDA graphs (mode "reduce-overhead").

Between runs the compile caches are dropped (torch._dynamo.reset), so each micro-batch
compiles for its own static shapes. A micro-batch that would start after --budget-s
seconds is skipped and says so. The result JSON goes to --out (default
benchmarks/results/train-text-classify-GPU-DATE.json).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, machine, steady

INTENTS = {
    "refund": "refund money back charge returned reimburse",
    "password reset": "password reset login locked account credentials",
    "shipping delay": "shipping delayed package tracking courier arrived",
    "cancel": "cancel subscription terminate stop plan renewal",
    "billing error": "invoice billed twice overcharged statement amount",
    "technical issue": "crash error bug freezes update broken",
    "address change": "address moved street postcode delivery update",
    "product question": "size colour material warranty compatible specs",
}
FACTS_H100_SEQ_PER_S = 1087.0  # FACTS.md: plain BERT-base loop, compiled bf16, B=32, T=128
TARGET_SEQ_PER_S = 1000.0


def make_rows(path: Path, rows: int, words: tuple[int, int], seed: int = 0) -> Path:
    """A CSV of ticket-like rows: filler words drawn from a Zipf law over a made-up
    vocabulary, with 3-6 keywords of the row's intent inserted at random places."""
    import numpy as np

    rng = np.random.default_rng(seed)
    # 40 syllables, 2-4 per word: ~60k distinct made-up words, 50k kept — enough whole
    # words that a 30,522-token WordPiece fills its vocabulary, as on real text.
    consonants = ["k", "l", "m", "t", "s", "v", "r", "p", "d", "sh", "n", "b"]
    syllables = [c + v for c in consonants for v in ["a", "o", "i"]]
    syllables += ["al", "or", "ex", "ing"]
    drawn_words = ("".join(rng.choice(syllables, size=rng.integers(2, 5))) for _ in range(90000))
    vocab = sorted(set(drawn_words))
    vocab = [vocab[i] for i in rng.permutation(len(vocab))[:50000]]  # Zipf ranks at random
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    names = sorted(INTENTS)
    keywords = {name: INTENTS[name].split() for name in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        lengths = rng.integers(words[0], words[1] + 1, size=rows)
        # All filler words in one draw: a draw with p= costs O(vocabulary) to set up.
        drawn = rng.choice(len(vocab), size=int(lengths.sum()), p=weights)
        ends = np.cumsum(lengths)
        for i in range(rows):
            label = names[i % len(names)]
            filler = [vocab[j] for j in drawn[ends[i] - lengths[i] : ends[i]]]
            for word in rng.choice(keywords[label], size=rng.integers(3, 7)):
                filler.insert(int(rng.integers(0, len(filler) + 1)), str(word))
            writer.writerow([f"t{i}", " ".join(filler), label])
    return path


def recipe_run(
    args: argparse.Namespace, micro: int, tokenizer: Path, cache: Path, graphs: bool | None = None
) -> dict[str, Any]:
    from torchrig.recipes.text_classify.config import from_preset
    from torchrig.recipes.text_classify.train import train

    total = args.warmup_steps + args.steps
    out = Path(args.work) / f"run-{micro}"
    # A new run in a new folder: the recipe tokenizes again (seconds; a run folder with
    # files but no checkpoint would need --force, and a new run stages its own cache).
    shutil.rmtree(out, ignore_errors=True)
    cfg = from_preset(
        "tiny" if args.cpu_smoke else "bert-base", data=Path(args.data), out=out,
        tokenizer=tokenizer, max_length=args.max_length, micro_batch=micro, steps=total,
        warmup=min(10, total), log_every=args.log_every, ckpt_every=total, keep=1,
        val_fraction=args.val_fraction, compile=not args.cpu_smoke,
        precision="fp32" if args.cpu_smoke else "bf16",
        device="cpu" if args.cpu_smoke else "cuda", export=False, tensorboard=False,
        cuda_graphs=graphs,
    )  # fmt: skip
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    start = time.perf_counter()
    result = train(cfg, say=say)
    run_s = time.perf_counter() - start
    first = result.records[0] if result.records else {}
    out_json: dict[str, Any] = {
        "micro_batch": micro,
        "precision": result.precision,
        "compiled": result.compiled,
        "cuda_graphs": any("+ CUDA graphs" in line for line in lines),
        "recipe": steady(result.records, args.warmup_steps, "samples_per_s", "sequences_per_s"),
        "first_interval_s": first.get("interval_s"),  # includes torch.compile
        "checkpoint_save_s": [round(s, 2) for s in result.checkpoint_s],
        "eval_accuracy": (result.evaluation or {}).get("accuracy"),
        "token_cache_reused": any("from the cache" in line for line in lines),
        "run_s": round(run_s, 1),
    }
    shutil.rmtree(out, ignore_errors=True)
    # Each phase's number as soon as it exists: a run cut short still leaves it in the log.
    print(f"result recipe (CUDA graphs {out_json['cuda_graphs']}): "
          f"{json.dumps(out_json['recipe'])}", flush=True)  # fmt: skip
    return out_json


def baseline(
    args: argparse.Namespace, micro: int, vocab: int, pad: int, device: Any, mode: str | None = None
) -> dict[str, Any]:
    """The plain loop: the same model on synthetic tensors already on the device; `mode`
    is torch.compile's ("reduce-overhead": the plain loop with CUDA graphs too)."""
    import torch
    import torch.nn.functional as F

    from torchrig.recipes.text_classify.model import build_model, flops_per_sample
    from torchrig.train.metrics import mfu, peak_tflops
    from torchrig.train.precision import resolve_precision

    precision = resolve_precision("fp32" if args.cpu_smoke else "bf16", device)  # TF32 too
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    labels = sorted(INTENTS)
    model = build_model(args.model, vocab, labels, pad).to(device).train()

    def loss_fn(ids: Any, mask: Any, y: Any) -> Any:
        return F.cross_entropy(model(ids, mask).float(), y)

    fn = loss_fn if args.cpu_smoke else torch.compile(loss_fn, mode=mode)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=device.type == "cuda")
    shape = (micro, args.max_length)
    data = [
        (
            torch.randint(0, vocab, shape, device=device),
            torch.ones(shape, dtype=torch.int64, device=device),
            torch.randint(0, len(labels), (micro,), device=device),
        )
        for _ in range(4)
    ]

    def step(i: int) -> Any:
        if mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        with precision.autocast():
            loss = fn(*data[i % len(data)])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    for i in range(args.warmup_steps):
        step(i)
    sync()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(args.steps):
        loss = step(i)
    sync()
    wall = time.perf_counter() - t0
    per_s = micro * args.steps / wall
    print(f"result baseline (mode {mode}): {per_s:.1f} sequences/s", flush=True)
    peak, _ = peak_tflops(device, precision.name)
    return {
        "sequences_per_s": round(per_s, 1),
        "mfu": None
        if peak is None
        else round(mfu(flops_per_sample(model, args.max_length), per_s, peak) or 0, 4),
        "warmup_s": round(warm_s, 2),
        "timed_steps": args.steps,
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if device.type == "cuda"
        else None,
        "loss_last": round(float(loss.detach()), 4),
    }


def _environment() -> dict[str, Any]:
    import tokenizers
    import torch
    import transformers

    env: dict[str, Any] = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
        env["sdpa_backends"] = {
            "flash": torch.backends.cuda.flash_sdp_enabled(),
            "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
            "cudnn": torch.backends.cuda.cudnn_sdp_enabled(),
        }
    return env


def _reset(device: Any) -> None:
    """Drop compiled graphs and cached blocks so the next run starts clean."""
    import gc

    import torch

    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=50_000)
    p.add_argument("--words", type=int, nargs=2, default=(100, 200), metavar=("MIN", "MAX"))
    p.add_argument("--vocab-size", type=int, default=30522)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--micro-batches", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--baseline-all", action="store_true", help="a baseline per micro-batch")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument(
        "--compare-graphs", action="store_true",
        help="at the first micro-batch also the recipe with --no-cuda-graphs (the loop as it "
        "was) and the plain loop with CUDA graphs (mode reduce-overhead)",
    )  # fmt: skip
    p.add_argument(
        "--no-baseline-graphs", action="store_true",
        help="with --compare-graphs: skip the plain loop with CUDA graphs (saves a compile)",
    )  # fmt: skip
    p.add_argument("--steps", type=int, default=100, help="timed steps")
    p.add_argument("--warmup-steps", type=int, default=20, help="untimed steps (compile)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--val-fraction", type=float, default=0.02)
    p.add_argument("--budget-s", type=float, default=170.0, help="start no run after this")
    p.add_argument(
        "--cpu-smoke", action="store_true", help="check the harness on a CPU (tiny-bert, fp32)"
    )
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "torchrig-bench-tc")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if args.cpu_smoke:
        args.model = "tiny-bert"
        for name, value in {"rows": 400, "words": (20, 40), "vocab_size": 1000, "max_length": 32,
                            "micro_batches": [8, 16], "steps": 10, "warmup_steps": 4,
                            "log_every": 2, "val_fraction": 0.1}.items():  # fmt: skip
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    else:
        args.model = "bert-base"

    import torch

    from torchrig.recipes.text_classify import data as data_mod
    from torchrig.recipes.text_classify import tokenizer as tok_mod
    from torchrig.recipes.text_classify.rows import read_rows

    if not args.cpu_smoke:
        assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU (or --cpu-smoke)"
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    began = time.perf_counter()
    shutil.rmtree(args.work, ignore_errors=True)
    work = Path(args.work)
    prep: dict[str, Any] = {"rows": args.rows, "words": list(args.words)}
    t0 = time.perf_counter()
    args.data = make_rows(work / "tickets.csv", args.rows, tuple(args.words))
    prep["generate_s"] = round(time.perf_counter() - t0, 1)
    prep["csv_bytes"] = args.data.stat().st_size
    t0 = time.perf_counter()
    rows = read_rows(args.data)
    prep["read_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    tok = tok_mod.load_or_train(None, rows.texts, work / "tokenizer", args.vocab_size)
    prep["tokenizer_train_s"] = round(time.perf_counter() - t0, 1)
    prep["vocab"] = len(tok)
    cache = work / "cache" / "train.npz"
    t0 = time.perf_counter()
    enc, _ = data_mod.encode_cached(rows.texts, tok, args.max_length, cache, args.data, "text")
    prep["tokenize_s"] = round(time.perf_counter() - t0, 1)
    prep["rows_filling_max_length"] = round(float((enc.lengths == args.max_length).mean()), 3)
    print(f"prepared: {json.dumps(prep)}", flush=True)

    runs: list[dict[str, Any]] = []
    for i, micro in enumerate(args.micro_batches):
        if i and time.perf_counter() - began > args.budget_s:
            runs.append({"micro_batch": micro, "skipped": f"past --budget-s {args.budget_s}"})
            continue
        print(f"== recipe, micro-batch {micro}", flush=True)
        # CUDA graphs are opt-in: --compare-graphs measures the recipe with and without them.
        graphs = True if args.compare_graphs and not args.cpu_smoke else None
        run = recipe_run(args, micro, work / "tokenizer", cache, graphs)
        _reset(device)
        if not args.no_baseline and (i == 0 or args.baseline_all):
            print(f"== baseline, micro-batch {micro}", flush=True)
            run["baseline"] = baseline(args, micro, len(tok), tok.pad_token_id, device)
            run["recipe_vs_baseline"] = round(
                run["recipe"]["sequences_per_s"] / run["baseline"]["sequences_per_s"], 4
            )
            _reset(device)
        if args.compare_graphs and i == 0 and not args.cpu_smoke:
            print(f"== recipe without CUDA graphs, micro-batch {micro}", flush=True)
            run["recipe_no_graphs"] = recipe_run(args, micro, work / "tokenizer", cache, False)
            _reset(device)
            if not args.no_baseline_graphs:
                print(f"== baseline with CUDA graphs, micro-batch {micro}", flush=True)
                run["baseline_graphs"] = baseline(
                    args, micro, len(tok), tok.pad_token_id, device, "reduce-overhead"
                )
                _reset(device)
        runs.append(run)

    env = _environment()
    gpu = env.get("gpu", "cpu").replace("NVIDIA ", "").replace(" ", "-")
    day = dt.date.today().isoformat()
    out = args.out or RESULTS / f"train-text-classify-{gpu}-{day}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    first = next((r for r in runs if "recipe" in r), None)
    data = {
        "machine": machine(),
        "environment": env,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "benchmark": "text-classify recipe training throughput (benchmarks/train_text_classify.py)",
        "model": args.model,
        "max_length": args.max_length,
        "cpu_smoke": args.cpu_smoke,
        "prep": prep,
        "runs": runs,
        "reference": {
            "facts_h100_plain_loop_sequences_per_s": FACTS_H100_SEQ_PER_S,
            "target_sequences_per_s": TARGET_SEQ_PER_S,
            "recipe_meets_target": None
            if first is None or args.cpu_smoke
            else first["recipe"]["sequences_per_s"] >= TARGET_SEQ_PER_S,
        },
        "total_s": round(time.perf_counter() - began, 1),
    }
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps({"prep": prep, "runs": [_short(r) for r in runs]}, indent=2))
    print(f"wrote {out} ({data['total_s']} s)")
    shutil.rmtree(work, ignore_errors=True)


def _short(run: dict[str, Any]) -> dict[str, Any]:
    if "recipe" not in run:
        return run
    short = {"micro_batch": run["micro_batch"], **run["recipe"]}
    short["first_interval_s"] = run["first_interval_s"]
    short["checkpoint_save_s"] = run["checkpoint_save_s"]
    if "baseline" in run:
        short["baseline_sequences_per_s"] = run["baseline"]["sequences_per_s"]
        short["recipe_vs_baseline"] = run["recipe_vs_baseline"]
    if "recipe_no_graphs" in run:
        short["recipe_no_graphs"] = run["recipe_no_graphs"]["recipe"]["sequences_per_s"]
        if "baseline_graphs" in run:
            short["baseline_graphs"] = run["baseline_graphs"]["sequences_per_s"]
    return short


if __name__ == "__main__":
    main()
