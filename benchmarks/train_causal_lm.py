"""Training throughput of the causal-LM recipe on GPUs: the recipe's own loop, from a
memory-mapped token file, against a plain loop on synthetic on-GPU tokens.

    # 1 H100: GPT-2 124M, compiled bf16, T=1024 (recipe + plain-loop baseline)
    python benchmarks/train_causal_lm.py --model gpt2-124m --runs 1
    # 1 H100: Llama-style 1B
    python benchmarks/train_causal_lm.py --model llama-1b --runs 1
    # 2 H200: DDP scaling of GPT-2 (1 GPU, then 2), and FSDP2 vs DDP on the 1B model
    python benchmarks/train_causal_lm.py --model gpt2-124m --runs 1 2:ddp
    python benchmarks/train_causal_lm.py --model llama-1b --runs 2:ddp 2:fsdp
    # 1 H100, one process, ~200 s: the plain loop, then the recipe per setting (issue 18)
    python benchmarks/train_causal_lm.py --variants full-64 chunked-64 full-64-cdt \
        --warmup-steps 10 --steps 30 --n-tokens 20e6 --timeout 235

--variants LOSS-MICRO[-flash|-cudnn][-cTOKENS][-cdt|-gemm|-max] (e.g. full-64-cdt): one
torchrun worker runs the plain loop at --baseline-micro (default: the smallest variant
micro-batch), then the recipe once per setting (--loss, --micro-batch, --attention,
--loss-chunk, --tune-kernels), each printing `result NAME: {...}` when measured; every
recipe line carries vs_plain. On --timeout the worker is stopped (SIGTERM) and the JSON
still holds every phase measured.

Each entry of --runs (GPUS[:STRATEGY]) is one `torchrun --standalone` of this script in
worker mode, so every run starts with a clean GPU and its own compile. A worker calls
`torchrig.recipes.causal_lm.train.train` (the code a user runs, not a copy) on a token file
of random ids made here with numpy (no network, no tokenizer), for --warmup-steps steps
that include torch.compile, then --steps timed steps; it saves one checkpoint at the end
(its time is reported: the workbench's stop timeout must cover it). Throughput counts only
the log intervals after warm-up: tokens over wall time with the loop's own timing (the log
step syncs), and the data-wait share is the loop's own measure.

On one GPU the worker then runs the baseline in the same process: the same model,
micro-batch and sequence length, compiled, bf16 autocast, fused AdamW, on tokens made on
the GPU up front — the plain loop of `torchrig bench` (FACTS.md: 453.8k tokens/s for
GPT-2 124M on an H100).

The result JSON goes to --out (default benchmarks/results/train-causal-lm-MODEL-GPU-DATE.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, machine, steady

DEFAULTS = {  # micro-batch, sequence length, vocabulary of the random tokens
    # 64 × 1024 tokens per micro-step, the gpt2-124m preset's choice on a GPU of 60 GiB or
    # more (config.MICRO_BATCH_BY_MEMORY): FACTS.md's 454k tokens/s plain loop used 16; a
    # larger batch amortises per-kernel overheads (pass --micro-batch 16 or 32 to compare).
    "gpt2-124m": (64, 1024, 50257),
    "llama-1b": (8, 2048, 32000),
    "tiny-gpt2": (8, 64, 512),
}


def make_tokens(path: Path, n_tokens: int, vocab: int, seed: int = 0) -> Path:
    """A token file in data.py's format (flat ids + JSON sidecar), random ids."""
    import numpy as np

    from torchrig.recipes.causal_lm.data import BIN_FORMAT, sidecar_path

    dtype = np.uint16 if vocab <= 1 << 16 else np.uint32
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = 1 << 26
    with path.open("wb") as handle:
        for start in range(0, n_tokens, chunk):
            handle.write(
                rng.integers(0, vocab, min(chunk, n_tokens - start), dtype=dtype).tobytes()
            )
    meta = {
        "format": BIN_FORMAT,
        "dtype": np.dtype(dtype).name,
        "tokenizer": "random-ids",
        "eos_token_id": vocab - 1,
        "sources": [],
        "tokens": n_tokens,
        "vocab_size": vocab,
    }
    sidecar_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def baseline(
    model_name: str,
    vocab: int,
    micro: int,
    seq: int,
    warmup: int,
    steps: int,
    attention: str = "auto",
    cpu: bool = False,
) -> dict[str, Any]:
    """The plain loop: same model, synthetic tokens already on the GPU, no data path.
    `cpu`: the harness check (fp32, eager, on the CPU)."""
    import contextlib

    import torch
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel

    from torchrig.recipes.causal_lm.model import build_model, flops_per_token
    from torchrig.train.attention import backend_name, training_sdpa_backends
    from torchrig.train.metrics import mfu, peak_tflops

    device = torch.device("cpu" if cpu else "cuda")
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    # The recipe's attention kernel for this GPU: the same settings on both sides.
    sdpa = training_sdpa_backends(device, attention)
    if not cpu:
        torch.cuda.reset_peak_memory_stats()
    model = build_model(model_name, vocab, max_seq_len=seq).to(device)

    def loss_fn(x: Any, y: Any) -> Any:
        logits = model(input_ids=x).logits
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))

    fn = loss_fn if cpu else torch.compile(loss_fn)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=not cpu)
    data = [torch.randint(0, vocab, (micro, seq + 1), device=device) for _ in range(4)]
    autocast = (
        contextlib.nullcontext if cpu else lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    )
    sync = (lambda: None) if cpu else torch.cuda.synchronize

    def step(i: int) -> Any:
        d = data[i % len(data)]
        with autocast(), sdpa_kernel(sdpa, set_priority=True):
            loss = fn(d[:, :-1], d[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.perf_counter()
    for i in range(warmup):
        step(i)
    sync()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(steps):
        loss = step(i)
    sync()
    wall = time.perf_counter() - t0
    tps = micro * seq * steps / wall
    peak, _ = peak_tflops(device, "fp32" if cpu else "bf16")
    out = {
        "micro_batch": micro,
        "tokens_per_s": round(tps, 1),
        "mfu": None if peak is None else round(mfu(flops_per_token(model, seq), tps, peak) or 0, 4),
        "warmup_s": round(warm_s, 2),
        "timed_steps": steps,
        "peak_mem_gib": None if cpu else round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "loss_last": round(float(loss.detach()), 4),
        "sdpa": backend_name(sdpa),
    }
    return out


@dataclasses.dataclass(frozen=True)
class Variant:
    """One recipe setting of --variants, written LOSS-MICRO[-ATTENTION][-cTOKENS][-TUNING]:
    e.g. "chunked-128", "full-64-flash", "chunked-64-c16384" (tokens per loss chunk);
    TUNING is the recipe's --tune-kernels level: "cdt" (blocks: inductor's
    coordinate-descent tuning), "gemm" (Triton matmul templates with fused epilogues),
    "max" (both), "off"; each a longer compile. Without one, the recipe's own default
    (config.TUNE_KERNELS_BY_MODEL)."""

    loss: str
    micro: int
    attention: str = "auto"
    chunk: int | None = None  # None: the recipe's default (linear_ce.CHUNK_TOKENS)
    tuning: str | None = None  # None: the recipe's default; else a KERNEL_TUNINGS level

    @property
    def name(self) -> str:
        micro = "auto" if self.micro == AUTO_MICRO else str(self.micro)
        extra = [self.attention] * (self.attention != "auto")
        extra += [f"c{self.chunk}"] * (self.chunk is not None)
        extra += [TUNING_NAMES[self.tuning]] if self.tuning is not None else []
        return "-".join([self.loss, micro, *extra])


# --variants' micro-batch "auto": the preset's step (--global-batch 512 sequences), its
# micro-batch and accumulation as the recipe fits them to the GPU (config.fit_to_device).
AUTO_MICRO = -1

# --variants' name for each --tune-kernels level ("blocks" was the first, named by the
# inductor option it sets).
TUNING_NAMES = {"blocks": "cdt", "gemm": "gemm", "max": "max", "off": "off"}
TUNING_PARTS = {name: level for level, name in TUNING_NAMES.items()}


def parse_variant(text: str) -> Variant:
    loss, micro, attention, chunk, tuning = "", 0, "auto", None, None
    for part in text.split("-"):
        if part in ("full", "chunked"):
            loss = part
        elif part.isdigit() and int(part) > 0:
            micro = int(part)
        elif part == "auto":
            micro = AUTO_MICRO
        elif part in ("flash", "cudnn"):
            attention = part
        elif part.startswith("c") and part[1:].isdigit() and int(part[1:]) > 0:
            chunk = int(part[1:])
        elif part in TUNING_PARTS:
            tuning = TUNING_PARTS[part]
        else:
            raise argparse.ArgumentTypeError(
                f"--variants {text!r}: unknown part {part!r} "
                "(LOSS-MICRO[-flash|-cudnn][-cTOKENS][-cdt|-gemm|-max|-off], e.g. chunked-128)"
            )
    if not loss or not micro:
        raise argparse.ArgumentTypeError(
            f"--variants {text!r}: give a loss (full|chunked) and a micro-batch or auto, "
            "e.g. full-64"
        )
    return Variant(loss, micro, attention, chunk, tuning)


def recipe_run(
    args: argparse.Namespace, run_dir: Path, micro: int, seq: int, variant: Variant | None = None
) -> tuple[dict[str, Any], Any]:
    """One run of the recipe's own loop (`train`, the code a user runs) on the token file:
    its steady throughput after the warm-up, and its RunResult."""
    import torch

    from torchrig.recipes.causal_lm.config import from_preset
    from torchrig.recipes.causal_lm.train import train

    rank = int(os.environ.get("RANK", "0"))
    total = args.warmup_steps + args.steps
    if rank == 0 and run_dir.exists():
        shutil.rmtree(run_dir)
    preset = "tiny" if args.model.startswith("tiny") else args.model
    cfg = from_preset(
        preset, model=args.model, tokens=Path(args.tokens), out=run_dir, steps=total,
        warmup=min(10, total), seq_len=seq,
        micro_batch=None if micro == AUTO_MICRO else micro,
        grad_accum=None if micro == AUTO_MICRO else args.grad_accum,
        log_every=args.log_every, ckpt_every=total, keep=1, strategy=args.strategy,
        compile=not (args.no_compile or args.cpu_smoke),
        precision="fp32" if args.cpu_smoke else "bf16",
        device="cpu" if args.cpu_smoke else "cuda", export=False, tensorboard=False,
        loss=variant.loss if variant else None,
        attention=variant.attention if variant else None,
        loss_chunk=variant.chunk if variant else None,
        tune_kernels=variant.tuning if variant else None,
    )  # fmt: skip
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    result = train(cfg, say=print if rank == 0 else (lambda _: None))
    got = steady(result.records, args.warmup_steps, "tokens_per_s", "tokens_per_s")
    if rank == 0:  # the step as the recipe shaped it (config.json of the run)
        ran = json.loads((run_dir / "config.json").read_text())
        got["step_shape"] = {k: ran[k] for k in ("micro_batch", "grad_accum", "global_batch")}
    return got, result


def worker(args: argparse.Namespace) -> None:
    """One run under torchrun: the recipe's training loop, then (1 GPU) the baseline."""
    import torch

    if not args.cpu_smoke:
        assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU"
    if args.variants:
        variants_worker(args)
        return
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    micro, seq, vocab = DEFAULTS[args.model]
    micro = args.micro_batch or micro
    seq = args.seq_len or seq
    run_dir = Path(args.work) / f"run-{world}-{args.strategy}"
    start = time.perf_counter()
    recipe, result = recipe_run(args, run_dir, micro, seq)
    run_s = time.perf_counter() - start
    if rank != 0:
        return
    first = result.records[0] if result.records else {}
    out: dict[str, Any] = {
        "gpus": world,
        "strategy": result.strategy,
        "precision": result.precision,
        "compiled": result.compiled,
        "model": args.model,
        "micro_batch_per_gpu": micro,
        "seq_len": seq,
        "grad_accum": args.grad_accum,
        "tokens_per_step": micro * seq * args.grad_accum * world,
        "warmup_steps": args.warmup_steps,
        "recipe": recipe,
        "sdpa": _sdpa_name(),
        "first_interval_s": first.get("interval_s"),  # includes torch.compile
        "checkpoint_save_s": [round(s, 2) for s in result.checkpoint_s],
        "checkpoint_bytes": _size(run_dir / "checkpoints"),
        "run_s": round(run_s, 1),
    }
    if dist_rank0():
        # Each phase's number as soon as it exists: a run cut short by its time limit
        # still leaves what it measured in its log.
        print(f"result recipe: {json.dumps(out['recipe'])}", flush=True)
    if world == 1 and not (args.no_baseline or args.cpu_smoke):
        # The recipe's model and compiled graphs went with train()'s frame; drop the
        # compile caches and cached blocks so the baseline starts from a clean GPU.
        torch._dynamo.reset()
        torch.cuda.empty_cache()
        out["baseline"] = baseline(args.model, vocab, micro, seq, args.warmup_steps, args.steps)
        print(f"result baseline: {json.dumps(out['baseline'])}", flush=True)
        out["recipe_vs_baseline"] = round(
            out["recipe"]["tokens_per_s"] / out["baseline"]["tokens_per_s"], 4
        )
    shutil.rmtree(run_dir, ignore_errors=True)
    Path(args.result).write_text(json.dumps(out, indent=2) + "\n")


def variants_worker(args: argparse.Namespace) -> None:
    """--variants: in one process, the plain loop at each --baseline-micro, then the recipe
    once per variant. Each number is printed (`result NAME: {...}`) and the result file
    rewritten as soon as it is measured, so a run cut short keeps what it measured."""
    import torch

    _, seq, vocab = DEFAULTS[args.model]
    seq = args.seq_len or seq
    variants: list[Variant] = args.variants
    given = sorted({v.micro for v in variants} - {AUTO_MICRO})[:1]
    micros = args.baseline_micro or given or [DEFAULTS[args.model][0]]
    out: dict[str, Any] = {
        "mode": "variants", "model": args.model, "seq_len": seq, "grad_accum": args.grad_accum,
        "warmup_steps": args.warmup_steps, "timed_steps": args.steps,
        "baselines": {}, "variants": {},
    }  # fmt: skip
    result_path = Path(args.result)

    def save() -> None:
        _ratios(out)
        result_path.write_text(json.dumps(out, indent=2) + "\n")

    def clean() -> None:
        # The previous phase's compiled graphs and cached blocks go first: each phase starts
        # from a clean GPU (the on-disk inductor cache stays, as for a user's second run).
        torch._dynamo.reset()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    for micro in micros:
        began = time.perf_counter()
        key = f"plain-{micro}"
        try:
            got = baseline(
                args.model, vocab, micro, seq, args.warmup_steps, args.steps, cpu=args.cpu_smoke
            )
        except Exception as exc:  # one phase failing must not lose the others
            got = {"micro_batch": micro, "error": _failure(exc)}
        got["phase_s"] = round(time.perf_counter() - began, 1)
        out["baselines"][key] = got
        print(f"result {key}: {json.dumps(got)}", flush=True)
        save()
        clean()
    for variant in variants:
        began = time.perf_counter()
        run_dir = Path(args.work) / f"run-{variant.name}"
        try:
            got, _ = recipe_run(args, run_dir, variant.micro, seq, variant)
            micro = got["step_shape"]["micro_batch"]
            got = {"micro_batch": micro, "loss": variant.loss, **got}
            got["tune_kernels"] = variant.tuning or "recipe default"
        except Exception as exc:  # one phase failing must not lose the others
            micro = None if variant.micro == AUTO_MICRO else variant.micro
            got = {"micro_batch": micro, "error": _failure(exc)}
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        got["phase_s"] = round(time.perf_counter() - began, 1)
        out["variants"][variant.name] = got
        print(f"result recipe {variant.name}: {json.dumps(got)}", flush=True)
        save()
        clean()
    best = max(
        (v for v in out["variants"].values() if "tokens_per_s" in v),
        key=lambda v: v["tokens_per_s"], default=None,
    )  # fmt: skip
    print(f"result best: {json.dumps(best)}", flush=True)


def _failure(exc: BaseException) -> str:
    """A phase's failure, one line for the JSON; the traceback goes to the log."""
    import traceback

    import torch

    traceback.print_exc()
    if isinstance(exc, torch.OutOfMemoryError):
        return "out of GPU memory"
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def _ratios(out: dict[str, Any]) -> None:
    """Each variant against the plain loop at its micro-batch (else the first one)."""
    plain = {b["micro_batch"]: b for b in out["baselines"].values() if "tokens_per_s" in b}
    first = next(iter(plain.values()), None)
    for got in out["variants"].values():
        ref = plain.get(got["micro_batch"], first)
        if ref is not None and "tokens_per_s" in got:
            got["vs_plain"] = round(got["tokens_per_s"] / ref["tokens_per_s"], 4)
            got["vs_plain_micro_batch"] = ref["micro_batch"]


def dist_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _sdpa_name() -> str:
    import torch

    from torchrig.train.attention import backend_name, training_sdpa_backends

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return backend_name(training_sdpa_backends(device))


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _environment() -> dict[str, Any]:
    import torch
    import transformers

    env: dict[str, Any] = {"torch": torch.__version__, "transformers": transformers.__version__}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_count"] = torch.cuda.device_count()
        env["cuda"] = torch.version.cuda
    return env


def parse_run(text: str) -> tuple[int, str]:
    gpus, _, strategy = text.partition(":")
    return int(gpus), strategy or ("none" if gpus == "1" else "ddp")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="gpt2-124m", choices=sorted(DEFAULTS))
    p.add_argument("--runs", nargs="+", default=["1"], help="GPUS[:ddp|fsdp] per run")
    p.add_argument("--steps", type=int, default=150, help="timed steps")
    p.add_argument("--warmup-steps", type=int, default=20, help="untimed steps (compile)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--micro-batch", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument(
        "--grad-accum", type=int, default=1, help="micro-steps per optimizer step (presets: 4)"
    )
    p.add_argument("--n-tokens", type=float, default=200e6, help="size of the token file")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument(
        "--variants", nargs="+", type=parse_variant, metavar="LOSS-MICRO[-ATTN][-TUNING]",
        help="one GPU, one process: the plain loop, then the recipe once per setting "
        "(e.g. full-64 chunked-64 chunked-128); see Variant",
    )  # fmt: skip
    p.add_argument(
        "--baseline-micro", type=int, nargs="+",
        help="--variants: the plain loop at these micro-batches (default: the smallest variant's)",
    )  # fmt: skip
    p.add_argument(
        "--cpu-smoke", action="store_true", help="check the harness on a CPU (tiny-gpt2, fp32)"
    )
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "torchrig-bench-train"))
    p.add_argument("--out", type=Path)
    p.add_argument("--timeout", type=int, default=560, help="seconds per run")
    # worker mode (set by the launcher)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--strategy", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--tokens", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    _, _, vocab = DEFAULTS[args.model]
    tokens = work / f"random-{vocab}-{int(args.n_tokens)}.bin"
    t0 = time.perf_counter()
    if not tokens.exists():
        make_tokens(tokens, int(args.n_tokens), vocab)
    make_s = time.perf_counter() - t0
    if args.variants:
        main_variants(args, tokens, vocab, make_s)
        return
    runs = []
    for spec in args.runs:
        gpus, strategy = parse_run(spec)
        result_path = work / f"result-{gpus}-{strategy}.json"
        result_path.unlink(missing_ok=True)
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={gpus}", __file__, "--worker", "--model", args.model,
            "--strategy", strategy, "--tokens", str(tokens), "--result", str(result_path),
            "--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps),
            "--log-every", str(args.log_every), "--work", str(work),
        ]  # fmt: skip
        for flag in ("micro_batch", "seq_len", "grad_accum"):
            if getattr(args, flag):
                cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        cmd += ["--no-compile"] * args.no_compile + ["--no-baseline"] * args.no_baseline
        cmd += ["--cpu-smoke"] * args.cpu_smoke
        print(f"== {spec}: {' '.join(cmd)}", flush=True)
        done = subprocess.run(cmd, timeout=args.timeout, check=False)
        if done.returncode != 0 or not result_path.exists():
            runs.append({"run": spec, "error": f"exit {done.returncode}"})
            continue
        runs.append({"run": spec, **json.loads(result_path.read_text())})
    by_gpus = {r["gpus"]: r for r in runs if "recipe" in r and r["strategy"] in ("none", "ddp")}
    summary: dict[str, Any] = {}
    if 1 in by_gpus and 2 in by_gpus:
        summary["ddp_scaling_2_vs_1"] = round(
            by_gpus[2]["recipe"]["tokens_per_s"] / by_gpus[1]["recipe"]["tokens_per_s"], 3
        )
    env = _environment()
    out = _result_path(args, env, "")
    data = {
        "machine": machine(),
        "environment": env,
        "benchmark": "causal-lm recipe training throughput (benchmarks/train_causal_lm.py)",
        "token_file": {"tokens": int(args.n_tokens), "vocab": vocab, "made_s": round(make_s, 1)},
        "runs": runs,
        "summary": summary,
    }
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps({"runs": [_short(r) for r in runs], **summary}, indent=2))
    print(f"wrote {out}")


def _result_path(args: argparse.Namespace, env: dict[str, Any], kind: str) -> Path:
    """--out, or benchmarks/results/train-causal-lm-MODEL{kind}-GPU-DATE.json."""
    gpu = env.get("gpu", "cpu").replace("NVIDIA ", "").replace(" ", "-")
    day = dt.date.today().isoformat()
    out = (
        Path(args.out)
        if args.out
        else RESULTS / f"train-causal-lm-{args.model}{kind}-{gpu}-{day}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def main_variants(args: argparse.Namespace, tokens: Path, vocab: int, make_s: float) -> None:
    """--variants: one torchrun worker on one GPU runs every phase; its result file is
    rewritten after each, so a run stopped by --timeout still leaves its numbers."""
    work = Path(args.work)
    result_path = work / "result-variants.json"
    result_path.unlink(missing_ok=True)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1",
        __file__, "--worker", "--model", args.model, "--strategy", "none",
        "--tokens", str(tokens), "--result", str(result_path), "--steps", str(args.steps),
        "--warmup-steps", str(args.warmup_steps), "--log-every", str(args.log_every),
        "--work", str(work), "--grad-accum", str(args.grad_accum),
        "--variants", *(v.name for v in args.variants),
    ]  # fmt: skip
    if args.baseline_micro:
        cmd += ["--baseline-micro", *map(str, args.baseline_micro)]
    if args.seq_len:
        cmd += ["--seq-len", str(args.seq_len)]
    cmd += ["--cpu-smoke"] * args.cpu_smoke
    print(f"== variants: {' '.join(cmd)}", flush=True)
    began = time.perf_counter()
    worker = subprocess.Popen(cmd)
    try:
        code: int | str = worker.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM first: torchrun passes it on to its worker (a SIGKILL would leave the
        # worker running on the GPU); the phases measured so far are in its result file.
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        code = f"stopped by --timeout {args.timeout} s"
    measured = json.loads(result_path.read_text()) if result_path.exists() else {}
    env = _environment()
    out = _result_path(args, env, "-variants")
    data = {
        "machine": machine(),
        "environment": env,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "benchmark": "causal-lm recipe variants against the plain loop, one process "
        "(benchmarks/train_causal_lm.py --variants)",
        "token_file": {"tokens": int(args.n_tokens), "vocab": vocab, "made_s": round(make_s, 1)},
        "worker_exit": code,
        "wall_s": round(time.perf_counter() - began, 1),
        **measured,
    }
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {out}")


def _short(run: dict[str, Any]) -> dict[str, Any]:
    if "recipe" not in run:
        return run
    short = {"run": run["run"], "strategy": run["strategy"], **run["recipe"]}
    short["checkpoint_save_s"] = run["checkpoint_save_s"]
    if "baseline" in run:
        short["baseline_tokens_per_s"] = run["baseline"]["tokens_per_s"]
        short["recipe_vs_baseline"] = run["recipe_vs_baseline"]
    return short


if __name__ == "__main__":
    main()
