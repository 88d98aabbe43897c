"""Training throughput of the image-classify recipe on one GPU: the recipe's own loop from
its decoded cache (GPU augmentation), against a plain loop on synthetic on-GPU tensors.

    # 1 H100/H200: ResNet-50, compiled bf16, channels_last, 224 px, micro-batch 256
    python benchmarks/train_image_classify.py
    # and variants of the recipe's step in the same process (see 5. below)
    python benchmarks/train_image_classify.py --variants default copy-in-step eager-augment
    # check the harness on a CPU (tiny-cnn, 400 small images, fp32, no compile)
    python benchmarks/train_image_classify.py --cpu-smoke

Steps, all in one process:

1. A JPEG ImageFolder tree is generated in a temporary folder (--images of 256-320 px,
   --classes classes; smooth random colour fields with a class tint, made in parallel).
2. The recipe (`torchrig.recipes.image_classify.train.train`, the code a user runs) trains
   on it from scratch with a fresh cache: the cache build (decode throughput: images/s
   over all CPUs) is part of the run, as it is for a user's first run. --warmup-steps
   steps include torch.compile, then --steps timed steps. Throughput counts only the log
   intervals after warm-up (images over wall time with the loop's own timing; the log step
   syncs), with the loop's own data-wait share and MFU. "first_epoch_s" is the wall time
   from calling train() to the end of the first epoch's steps: cache build, model build,
   compile and one pass over the training images.
3. The baseline in the same process: the same model and micro-batch, compiled, bf16
   autocast, channels_last, fused AdamW, on tensors made on the GPU up front — the plain
   loop of `torchrig bench` (FACTS.md: 5,493 images/s for ResNet-50 on an H100).
4. GPU JPEG decoding (nvjpeg, `torchvision.io.decode_jpeg(device="cuda")`) of --nvjpeg-images
   of the same files, with the cache build's resize and the copy back to the host, against
   the recipe's CPU cache build rate from step 2 ("nvjpeg_vs_cpu_cache"; --no-nvjpeg skips);
   then the recipe's own `--decode gpu` cache build of the whole tree (gpu_decode.py:
   read-ahead threads, batched nvjpeg, Pillow's resize weights on the GPU, rows written to
   the cache file): "gpu_vs_cpu_cache_build", and its rows against the CPU build's.
5. The other --variants of the recipe's step, each a fresh train() on the cache of step 2
   (not rebuilt), --variant-steps timed steps after the same warm-up:
     default        what a user runs: the augmentation compiled into the step, CUDA
                    graphs, each batch copied to the GPU ahead on the prefetch thread's stream
     no-graphs      the same with --no-cuda-graphs
     copy-in-step   the same as default but the copy on the compute stream, just before
                    its step (loop.COPY_AHEAD off)
     eager-augment  the step before issue 18's fix: the augmentation as eager kernels before
                    the compiled step, no CUDA graphs, the copy in the step (the task's
                    prepare_in_step and static_shapes and loop.COPY_AHEAD switched off)
   The first variant is the one of step 2.

After each phase the result JSON is written again with what is measured so far (a run cut
by a time limit keeps it) and a `result ...` line printed. The JSON goes to --out (default
benchmarks/results/train-image-classify-MODEL-GPU-DATE.json).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, machine, steady


def _make_images(task: tuple[str, int, int, int, int, int]) -> int:
    """One chunk of the generated tree: (root, class, first index, count, min px, max px)."""
    import numpy as np
    from PIL import Image

    root, label, first, count, lo, hi = task
    rng = np.random.default_rng([label, first])
    folder = Path(root) / f"class-{label:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    tint = np.array([(label * 37) % 256, (label * 91) % 256, (label * 53) % 256])
    for i in range(first, first + count):
        w, h = (int(v) for v in rng.integers(lo, hi + 1, 2))
        # A smooth field (8×8 random colours upscaled) plus fine noise: JPEG sizes and
        # decode costs close to photos', unlike flat colours.
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))
        pixels = 0.6 * field + 0.4 * tint + rng.normal(0, 12, (h, w, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        image.save(folder / f"{i:06d}.jpg", quality=90)
    return count


def make_tree(root: Path, images: int, classes: int, lo: int, hi: int) -> dict[str, Any]:
    """The JPEG tree, made by a pool over every CPU; (images, bytes, seconds)."""
    start = time.perf_counter()
    per_class = images // classes
    chunk = 100
    tasks = [
        (str(root), c, first, min(chunk, per_class - first), lo, hi)
        for c in range(classes)
        for first in range(0, per_class, chunk)
    ]
    with multiprocessing.get_context("spawn").Pool(os.cpu_count()) as pool:
        made = sum(pool.imap_unordered(_make_images, tasks))
    n_bytes = sum(p.stat().st_size for p in root.rglob("*.jpg"))
    return {
        "images": made,
        "classes": classes,
        "px": [lo, hi],
        "bytes": n_bytes,
        "made_s": round(time.perf_counter() - start, 1),
    }


VARIANTS = ("default", "no-graphs", "copy-in-step", "eager-augment")


@contextlib.contextmanager
def _variant(name: str) -> Iterator[dict[str, Any]]:
    """Config overrides for a variant of the recipe's step; copy-in-step and eager-augment
    also switch the loop's copy-ahead off, and eager-augment the task's augmentation out of
    the compiled step (the step before the fix)."""
    from torchrig.recipes.classify import loop
    from torchrig.recipes.image_classify import train as train_mod

    if name in ("default", "no-graphs"):
        yield {"cuda_graphs": False} if name == "no-graphs" else {}
        return
    loop.COPY_AHEAD = False
    if name == "copy-in-step":
        try:
            yield {}
        finally:
            loop.COPY_AHEAD = True
        return
    original = train_mod.build_task  # type: ignore[attr-defined]

    def build(*a: Any, **k: Any) -> Any:
        task = original(*a, **k)
        task.prepare_in_step = False
        task.static_shapes = False  # no CUDA graphs either, as before
        return task

    train_mod.build_task = build  # type: ignore[attr-defined]
    try:
        yield {}
    finally:
        train_mod.build_task = original  # type: ignore[attr-defined]
        loop.COPY_AHEAD = True


def _fresh_device() -> None:
    """Drop the last run's compiled graphs (and their CUDA graph pools) and cached blocks,
    so the next run starts from a clean device."""
    import torch

    torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def recipe_run(
    args: argparse.Namespace, tree: Path, run_dir: Path, variant: str = "default", steps: int = 0
) -> dict[str, Any]:
    """The recipe from scratch (the cache in WORK/cache: built by the first run, reused by
    the others); timestamps of its lines give the phases."""
    from torchrig.recipes.image_classify import cache as cache_mod
    from torchrig.recipes.image_classify.config import from_preset
    from torchrig.recipes.image_classify.train import train

    total = args.warmup_steps + (steps or args.steps)
    preset = "tiny" if args.cpu_smoke else "resnet50"
    lines: list[tuple[float, str]] = []

    def say(line: str) -> None:
        lines.append((time.perf_counter(), line))
        print(line, flush=True)

    with _variant(variant) as overrides:
        cfg = from_preset(
            preset, model=args.model, data=tree, out=run_dir, steps=total,
            warmup=min(10, total), micro_batch=args.micro_batch, image_size=args.image_size,
            cache_size=args.cache_size, log_every=args.log_every, ckpt_every=total, keep=1,
            compile=not args.cpu_smoke, precision="fp32" if args.cpu_smoke else "bf16",
            device="cpu" if args.cpu_smoke else "cuda", tensorboard=False, export=False,
            workers=args.workers, cache=run_dir.parent / "cache", **overrides,
        )  # fmt: skip
        start = time.perf_counter()
        result = train(cfg, say=say)
        run_s = time.perf_counter() - start
    # The loop's header line comes just before its first step; records' elapsed_s count
    # from there.
    header = next(t for t, line in lines if line.startswith("image-classify:"))
    sidecar = next(cfg.cache_dir.glob("*.u8.json"))
    built = json.loads(sidecar.read_text())
    n_train = sum(int(n) for n in _train_count(lines))
    steps_per_epoch = math.ceil(n_train / args.micro_batch)
    epoch_s = _epoch_elapsed(result.records, steps_per_epoch)
    return {
        "variant": variant,
        "cuda_graphs": any("CUDA graphs" in line for _, line in lines),
        "precision": result.precision,
        "compiled": result.compiled,
        "model": args.model,
        "image_size": args.image_size,
        "cache_size": cfg.resolved_cache_size,
        "micro_batch": args.micro_batch,
        "warmup_steps": args.warmup_steps,
        "cache_build": {
            "images": built["count"],
            "seconds": built["build_s"],
            "fsync_s": built.get("fsync_s"),
            "images_per_s": round(built["count"] / built["build_s"], 1),
            "processes": cfg.workers or cache_mod.available_cpus(),
            "bytes": sidecar.with_suffix("").stat().st_size,
        },
        "recipe": steady(result.records, args.warmup_steps, "samples_per_s", "images_per_s"),
        "time_to_first_step_s": round(header - start, 2),
        "first_interval_s": result.records[0]["interval_s"] if result.records else None,
        "train_images": n_train,
        "steps_per_epoch": steps_per_epoch,
        "first_epoch_s": None if epoch_s is None else round(header - start + epoch_s, 1),
        "evaluation_accuracy": (result.evaluation or {}).get("accuracy"),
        "checkpoint_save_s": [round(s, 2) for s in result.checkpoint_s],
        "run_s": round(run_s, 1),
    }


def nvjpeg_decode(tree: Path, size: int, limit: int, batch: int = 256) -> dict[str, Any]:
    """GPU JPEG decoding as the cache build would use it: files read on the host,
    `torchvision.io.decode_jpeg(device="cuda")` on a batch of 256, each image's centre
    square resized to `size` (bilinear, antialiased) on the GPU, the uint8 [size, size, 3]
    copied back to the host (the cache is a file). Images/s over `limit` files, end to
    end, to set against the recipe's CPU cache build (all cores, Pillow with JPEG draft
    mode) in the same run."""
    import torch
    import torch.nn.functional as F
    from torchvision.io import decode_jpeg, read_file

    files = sorted(tree.rglob("*.jpg"))[:limit]

    def run(paths: list[Path]) -> int:
        done = 0
        for i in range(0, len(paths), batch):
            data = [read_file(str(f)) for f in paths[i : i + batch]]
            images = decode_jpeg(data, device="cuda")
            out = torch.empty(len(images), size, size, 3, dtype=torch.uint8, device="cuda")
            for j, im in enumerate(images):
                _, h, w = im.shape
                side = min(h, w)
                top, left = (h - side) // 2, (w - side) // 2
                square = im[None, :, top : top + side, left : left + side].float()
                resized = F.interpolate(
                    square, size=(size, size), mode="bilinear", antialias=True, align_corners=False
                )
                out[j] = resized[0].round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)
            out.cpu()  # the cache is on disk: every image comes back to the host
            done += len(images)
        torch.cuda.synchronize()
        return done

    run(files[:batch])  # nvjpeg handles, kernels
    start = time.perf_counter()
    n = run(files)
    seconds = time.perf_counter() - start
    return {"images": n, "seconds": round(seconds, 2), "images_per_s": round(n / seconds, 1)}


def cpu_cache_build(tree: Path, size: int, work: Path, workers: int | None) -> dict[str, Any]:
    """The recipe's CPU cache build alone (--decode-only): Pillow processes over every CPU
    into WORK/cache, as the first recipe run would build it."""
    from torchrig.recipes.image_classify import cache
    from torchrig.recipes.image_classify.folder import scan

    built = cache.build_cache(scan(tree), work / "cache", size, workers, say=print)
    return {
        "images": len(built),
        "seconds": round(built.build_s, 2),
        "fsync_s": json.loads(cache.sidecar(built.path).read_text()).get("fsync_s"),
        "images_per_s": round(built.images_per_s, 1),
        "processes": built.workers,
    }


def gpu_cache_build(tree: Path, size: int, work: Path) -> dict[str, Any]:
    """The recipe's own `--decode gpu` build (cache.build_cache with nvjpeg) of the whole
    tree into a fresh folder, against the CPU build of step 2 in the same run: images/s,
    and how far its rows are from the CPU build's (nvjpeg's IDCT is not libjpeg-turbo's)."""
    import numpy as np
    import torch

    from torchrig.recipes.image_classify import cache, gpu_decode
    from torchrig.recipes.image_classify.folder import scan

    folder = scan(tree)
    decoder = gpu_decode.nvjpeg(torch.device("cuda"))
    built = cache.build_cache(folder, work / "cache-gpu", size, say=print, gpu=decoder)
    cpu = cache.open_cache(folder, work / "cache", size)
    out: dict[str, Any] = {
        "images": len(built),
        "seconds": round(built.build_s, 2),
        "fsync_s": json.loads(cache.sidecar(built.path).read_text()).get("fsync_s"),
        "images_per_s": round(built.images_per_s, 1),
        "skipped": len(built.skipped),
    }
    if cpu is not None:
        rows = np.arange(0, len(built), max(1, len(built) // 500))
        diff = np.abs(built.images[rows].astype(np.int16) - cpu.images[rows].astype(np.int16))
        out["vs_cpu_rows"] = {
            "rows": len(rows),
            "mean_abs_level": round(float(diff.mean()), 3),
            "max_abs_level": int(diff.max()),
        }
    shutil.rmtree(work / "cache-gpu", ignore_errors=True)
    return out


def _epoch_elapsed(records: list[dict[str, Any]], step: int) -> float | None:
    """Seconds from the loop's start to the end of `step`, interpolated within the log
    interval that holds it (steps of an interval take equal time once compiled)."""
    rows = [r for r in records if "loss" in r]
    for before, rec in zip([None, *rows], rows, strict=False):
        if rec["step"] < step:
            continue
        start_step = 0 if before is None else before["step"]
        start_s = 0.0 if before is None else before["elapsed_s"]
        share = (step - start_step) / (rec["step"] - start_step)
        return float(start_s + share * (rec["elapsed_s"] - start_s))
    return None


def _train_count(lines: list[tuple[float, str]]) -> list[str]:
    """The training image count from the recipe's "data: ..." note."""
    for _, line in lines:
        if line.startswith("data: "):
            return [line.split(" classes, ")[1].split(" training")[0]]
    raise SystemExit("the recipe printed no data line")


def baseline(args: argparse.Namespace, classes: int) -> dict[str, Any]:
    """The plain loop: same model, synthetic tensors already on the device, no data path."""
    import torch
    import torch.nn.functional as F

    from torchrig.bench.model import resnet50_flops_per_image
    from torchrig.recipes.image_classify import models
    from torchrig.train.metrics import mfu, peak_tflops

    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    torch.manual_seed(0)
    model = models.build(args.model, classes).to(device)
    flops = models.flops_per_sample(model, args.image_size)
    model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats()

    def loss_fn(x: Any, y: Any) -> Any:
        return F.cross_entropy(model(x).float(), y)

    fn = loss_fn if args.cpu_smoke else torch.compile(loss_fn)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    size = args.image_size
    data = [
        (
            torch.randn(args.micro_batch, 3, size, size, device=device).contiguous(
                memory_format=torch.channels_last
            ),
            torch.randint(0, classes, (args.micro_batch,), device=device),
        )
        for _ in range(4)
    ]

    def step(i: int) -> Any:
        x, y = data[i % len(data)]
        if args.cpu_smoke:
            loss = fn(x, y)
        else:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = fn(x, y)
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
    ips = args.micro_batch * args.steps / wall
    peak, _ = peak_tflops(device, "bf16")
    out: dict[str, Any] = {
        "images_per_s": round(ips, 1),
        "mfu": None if peak is None else round(mfu(flops, ips, peak) or 0.0, 4),
        "flops_per_image": flops,
        "warmup_s": round(warm_s, 2),
        "timed_steps": args.steps,
        "loss_last": round(float(loss.detach()), 4),
    }
    if device.type == "cuda":
        out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if args.model == "resnet50" and size == 224:
        # FlopCounterMode's count against the MAC count of torchrig bench.
        out["flops_check_vs_bench"] = round(flops / resnet50_flops_per_image(), 4)
    return out


def _environment() -> dict[str, Any]:
    import PIL
    import torch

    env: dict[str, Any] = {"torch": torch.__version__, "pillow": PIL.__version__}
    for name in ("torchvision", "timm"):
        try:
            env[name] = __import__(name).__version__
        except Exception as exc:  # absent, or built for another torch
            env[name] = f"unavailable ({type(exc).__name__})"
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    return env


def _out_path(args: argparse.Namespace, env: dict[str, Any]) -> Path:
    gpu = env.get("gpu", "cpu").replace("NVIDIA ", "").replace(" ", "-")
    day = dt.date.today().isoformat()
    return args.out or RESULTS / f"train-image-classify-{args.model}-{gpu}-{day}.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50")
    p.add_argument("--images", type=int, default=20_000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--min-px", type=int, default=256)
    p.add_argument("--max-px", type=int, default=320)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--cache-size", type=int, default=256)
    p.add_argument("--micro-batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=100, help="timed steps (first variant)")
    p.add_argument("--warmup-steps", type=int, default=30, help="untimed steps (compile)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=["default"])
    p.add_argument("--variant-steps", type=int, default=60, help="timed steps of the others")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--workers", type=int, help="cache decoding processes (default: all CPUs)")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--no-nvjpeg", action="store_true", help="skip the GPU JPEG decode measure")
    p.add_argument("--nvjpeg-images", type=int, default=8000, help="files the GPU decodes")
    p.add_argument(
        "--decode-only", action="store_true",
        help="only the cache builds: CPU (Pillow processes), nvjpeg alone, the recipe's GPU build",
    )  # fmt: skip
    p.add_argument(
        "--cpu-smoke", action="store_true", help="check the harness on a CPU (tiny-cnn, fp32)"
    )
    p.add_argument("--work", type=Path, help="scratch folder (default: a new temporary one)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if args.cpu_smoke:
        args.model, args.images, args.classes = "tiny-cnn", 400, 4
        args.min_px, args.max_px, args.image_size, args.cache_size = 40, 64, 32, 36
        args.micro_batch, args.steps, args.warmup_steps, args.log_every = 32, 10, 10, 5
        args.variant_steps = 10
    else:
        import torch

        assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU (or --cpu-smoke)"

    work = args.work or Path(tempfile.mkdtemp(prefix="torchrig-bench-image-"))
    tree = work / "images"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.rmtree(work / "cache", ignore_errors=True)  # the first run builds it afresh
    began = time.perf_counter()
    env = _environment()
    out = _out_path(args, env)
    out.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "machine": machine(),
        "environment": env,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "benchmark": "image-classify recipe training throughput "
        "(benchmarks/train_image_classify.py)",
        "variants": args.variants,
    }
    run: dict[str, Any] = {}

    def phase(name: str, value: Any) -> None:
        """One phase measured: its result line at once, and the JSON so far on disk."""
        print(f"result {name}: {json.dumps(value)}", flush=True)
        data["run"] = run
        data["total_s"] = round(time.perf_counter() - began, 1)
        out.write_text(json.dumps(data, indent=2) + "\n")

    try:
        made = make_tree(tree, args.images, args.classes, args.min_px, args.max_px)
        data["image_tree"] = made
        print(
            f"made {made['images']} JPEGs ({made['bytes'] / 2**20:.0f} MiB) in {made['made_s']} s"
        )
        names = [] if args.decode_only else list(args.variants)
        first, others = (names[0] if names else None), names[1:]
        if args.decode_only:
            run["cache_build"] = cpu_cache_build(tree, args.cache_size, work, args.workers)
            phase("cpu cache build", run["cache_build"])
        try:
            if first:
                run.update(recipe_run(args, tree, work / f"run-{first}", first))
                phase("recipe", run)
        except Exception as exc:  # keep measuring the rest: the baseline, decoding, variants
            run["recipe_error"] = _error(exc)
            phase("recipe failed", run["recipe_error"])
        cpu_rate = _cpu_cache_rate(work)
        if not args.no_baseline and not args.decode_only:
            _fresh_device()
            run["baseline"] = baseline(args, args.classes)
            if "recipe" in run:
                run["recipe_vs_baseline"] = round(
                    run["recipe"]["images_per_s"] / run["baseline"]["images_per_s"], 4
                )
            phase("baseline", run["baseline"])
        if not args.cpu_smoke and not args.no_nvjpeg:
            try:
                run["nvjpeg_decode"] = nvjpeg_decode(tree, args.cache_size, args.nvjpeg_images)
            except Exception as exc:  # torchvision without nvjpeg: say so, measure the rest
                run["nvjpeg_decode"] = {"error": _error(exc)}
            gpu_rate = run["nvjpeg_decode"].get("images_per_s")
            if gpu_rate and cpu_rate:
                run["nvjpeg_vs_cpu_cache"] = round(gpu_rate / cpu_rate, 3)
            phase("nvjpeg", run["nvjpeg_decode"])
            try:
                run["gpu_cache_build"] = gpu_cache_build(tree, args.cache_size, work)
            except Exception as exc:  # no torchvision/nvjpeg: say so, measure the rest
                run["gpu_cache_build"] = {"error": _error(exc)}
            gpu_rate = run["gpu_cache_build"].get("images_per_s")
            if gpu_rate and cpu_rate:
                run["gpu_vs_cpu_cache_build"] = round(gpu_rate / cpu_rate, 3)
            phase("gpu cache build", run["gpu_cache_build"])
        run["variant_runs"] = {}
        for name in others:
            _fresh_device()
            try:
                other = recipe_run(args, tree, work / f"run-{name}", name, args.variant_steps)
            except Exception as exc:
                run["variant_runs"][name] = {"error": _error(exc)}
                phase(f"variant {name} failed", run["variant_runs"][name])
                continue
            keep = ("variant", "cuda_graphs", "recipe", "time_to_first_step_s", "run_s")
            run["variant_runs"][name] = {k: other[k] for k in keep}
            if "baseline" in run:
                run["variant_runs"][name]["vs_baseline"] = round(
                    other["recipe"]["images_per_s"] / run["baseline"]["images_per_s"], 4
                )
            phase(f"variant {name}", run["variant_runs"][name])
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    short = {
        "cache_images_per_s": cpu_rate,
        **run.get("recipe", {"recipe_error": run.get("recipe_error")} if first else {}),
        "first_epoch_s": run.get("first_epoch_s"),
        "nvjpeg_vs_cpu_cache": run.get("nvjpeg_vs_cpu_cache"),
        "gpu_vs_cpu_cache_build": run.get("gpu_vs_cpu_cache_build"),
    }
    if "baseline" in run:
        short["baseline_images_per_s"] = run["baseline"]["images_per_s"]
        short["recipe_vs_baseline"] = run.get("recipe_vs_baseline")
    for name, other in run["variant_runs"].items():
        short[f"{name}_images_per_s"] = other.get("recipe", {}).get("images_per_s")
    print(json.dumps(short, indent=2))
    print(f"wrote {out}")


def _error(exc: BaseException) -> str:
    import traceback

    print(traceback.format_exc(), flush=True)  # the whole story in the log
    return repr(exc)[:500]


def _cpu_cache_rate(work: Path) -> float | None:
    """The CPU cache build's images/s from its sidecar (None: no cache was built)."""
    found = next((work / "cache").glob("*.u8.json"), None)
    if found is None:
        return None
    built = json.loads(found.read_text())
    return round(built["count"] / built["build_s"], 1) if built.get("build_s") else None


if __name__ == "__main__":
    main()
