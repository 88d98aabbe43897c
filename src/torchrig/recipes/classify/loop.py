"""The training loop of the classification recipes, top to bottom.

A recipe builds a ClassifyTask (model, data, labels) and calls `run`. One process per
device (torchrun). Each step: `grad_accum` micro-batches are copied to the device, prepared
there (the image recipe augments on the GPU), run forward and backward under autocast with a
(optionally class-weighted) cross-entropy; gradients are reduced over processes on the last
one only, clipped; one AdamW step, one schedule step. Every `log_every` steps a line of
metrics; every `eval_every` steps (and at the end) an evaluation on rank 0; every
`ckpt_every` steps an atomic checkpoint. SIGTERM or SIGINT ends the loop at the next step
boundary with a checkpoint (exit 0); `--resume` continues exactly where it stopped.

Outputs in OUT: config.json, classifier.json (labels and what export needs), metrics.jsonl,
tensorboard/, loss.png, checkpoints/, eval.json + confusion.png (+ what the recipe draws of
its mistakes), and final/ (classifier.json + model.safetensors + the recipe's files).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from torchrig.errors import UsageError
from torchrig.fsutil import write_atomically
from torchrig.recipes.classify import evaluate as E
from torchrig.recipes.classify.config import ClassifyConfig
from torchrig.recipes.classify.meta import (
    FINAL_WEIGHTS,
    classifier_meta,
    read_meta,
    write_meta,
)
from torchrig.recipes.classify.task import ClassifyTask, Mistake
from torchrig.train import distributed as D
from torchrig.train.metrics import mfu, peak_memory_gib, peak_tflops, round_or_none
from torchrig.train.optim import build_optimizer, build_scheduler, optimizer_step
from torchrig.train.precision import resolve_precision, should_compile
from torchrig.train.prefetch import Prefetcher
from torchrig.train.result import RunResult
from torchrig.train.scaffold import FINAL, Scaffold, find_checkpoint, staged_run, write_final
from torchrig.train.signals import StopFlag

Say = Callable[[str], None]
BuildTask = Callable[[D.Dist, Path], ClassifyTask]
"""(dist, folder) → the task; the recipe writes its files (tokenizer, caches) in folder."""
MAX_MISTAKES = 64  # the most confident ones are kept for the recipe's report
# Batches copied to the GPU ahead, on the prefetch thread's stream (True), or by the loop on
# the compute stream just before their step (False: only the image benchmark's
# copy-in-step variant, to measure what the overlap gives).
COPY_AHEAD = True


class ClassifierLoss(torch.nn.Module):  # type: ignore[misc]
    """Model plus loss as one module, so compile and DDP see both. Summed over the batch:
    the loop divides by the samples of the whole step (all micro-batches). With `prepare`
    (a task's `prepare_in_step`), the batch's preparation runs first, inside the module:
    compiled with the model, not as separate eager kernels (docs/performance.md)."""

    def __init__(
        self,
        model: Any,
        weight: Any,
        label_smoothing: float,
        prepare: Callable[[tuple[Any, ...], bool], tuple[Any, ...]] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing
        self.prepare = prepare
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, labels: Any, *inputs: Any) -> Any:
        if self.prepare is not None:
            inputs = self.prepare(inputs, True)
        logits = self.model(*inputs)
        # fp32 logits: a softmax over bf16 logits loses the small differences that matter
        # late in training.
        return F.cross_entropy(
            logits.float(),
            labels,
            weight=self.weight,
            label_smoothing=self.label_smoothing,
            reduction="sum",
        )


def run(
    cfg: ClassifyConfig,
    build_task: BuildTask,
    stop: StopFlag | None = None,
    say: Say = print,
) -> RunResult:
    cfg.check()
    stop = stop or StopFlag()
    dist = D.Dist.from_env(cfg.device)
    D.setup(dist)
    try:
        return _run(cfg, build_task, stop, dist, say if dist.is_main else (lambda _: None))
    finally:
        D.teardown()


def _strategy(requested: str, dist: D.Dist) -> str:
    # Classifiers of these sizes fit one GPU with room to spare: DDP, never FSDP.
    if not dist.distributed:
        return "none"
    if requested == "none":
        raise UsageError(
            f"--strategy none with {dist.world_size} processes", "use ddp (or auto) under torchrun"
        )
    return "ddp"


def _run(
    cfg: ClassifyConfig,
    build_task: BuildTask,
    stop: StopFlag,
    dist: D.Dist,
    say: Say,
) -> RunResult:
    ckpts, latest = find_checkpoint(cfg, dist, say)
    with staged_run(cfg, dist, say, ckpts, latest) as run:
        return _train(cfg, build_task, stop, dist, say, run)


def _train(
    cfg: ClassifyConfig,
    build_task: BuildTask,
    stop: StopFlag,
    dist: D.Dist,
    say: Say,
    run: Scaffold,
) -> RunResult:
    out = run.work  # the staging folder until the run is known to work, then cfg.out

    # --- data and model ---------------------------------------------------------------
    task = build_task(dist, out)
    if run.latest is not None:
        _check_same_labels(cfg.out, task.labels)
    for note in task.notes:
        say(note)
    meta = classifier_meta(task)
    if dist.is_main:
        config = {"recipe": task.recipe, **cfg.to_json()}
        write_atomically(out / "config.json", json.dumps(config, indent=2) + "\n")
        write_meta(out, meta)
    torch.manual_seed(cfg.seed)
    model = task.model.to(dist.device)
    precision = resolve_precision(cfg.precision, dist.device)
    strategy = _strategy(cfg.strategy, dist)
    compiled = should_compile(cfg.compile, dist.device)
    weight = None
    if cfg.class_weights == "balanced":
        weights = E.class_weights(task.train_counts)
        weight = torch.tensor(weights, dtype=torch.float32, device=dist.device)
        say(
            "class weights: "
            + ", ".join(f"{n} {w:.2f}" for n, w in zip(task.labels, weights, strict=True))
        )
    loss_module = ClassifierLoss(
        model, weight, cfg.label_smoothing, task.prepare if task.prepare_in_step else None
    )
    wrapped = D.wrap_model(loss_module, dist, strategy)  # type: ignore[arg-type]
    graphs = _cuda_graphs(cfg, task, dist, strategy, compiled)
    # CUDA graphs (torch.compile's "reduce-overhead"): one launch replays the whole forward
    # and backward, so the host's per-kernel launch work no longer bounds a small step
    # (BERT-base at micro-batch 32: docs/text-classify.md, Performance).
    mode = "reduce-overhead" if graphs else None
    step_fn = torch.compile(wrapped, mode=mode) if compiled else wrapped

    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    scheduler = build_scheduler(optimizer, cfg.warmup, cfg.steps, cfg.min_lr_ratio)
    torch.manual_seed(cfg.seed + dist.rank)  # per-rank streams for dropout and the like

    start_step = run.resume(
        model=model, optimizer=optimizer, scheduler=scheduler, scaler=precision.scaler,
        batches=task.train, meta={"config": cfg.to_json(), "recipe": task.recipe},
    )  # fmt: skip
    peak, peak_note = peak_tflops(dist.device, precision.name)
    result = run.begin(start_step, strategy=strategy, precision=precision.name, compiled=compiled)
    n_params = sum(p.numel() for p in model.parameters())
    samples_per_step = cfg.micro_batch * cfg.grad_accum  # per process
    say(
        f"{task.recipe}: {len(task.labels)} classes, {sum(task.train_counts)} training "
        f"{task.unit} | {n_params / 1e6:.1f}M parameters | {dist.world_size} process(es), "
        f"{strategy} | {precision.name}{' + compile' if compiled else ''}"
        f"{' + CUDA graphs' if graphs else ''} | "
        f"{samples_per_step * dist.world_size} {task.unit}/step | {peak_note}"
    )
    if run.nothing_to_do():
        return result

    def evaluate_now(at: int, final: bool) -> None:
        began = time.perf_counter()
        if dist.is_main:
            report, mistakes = _evaluate(task, model, precision, dist.device)
            seconds = time.perf_counter() - began
            acc, f1 = report["accuracy"], report["macro_f1"]
            run.log.write(
                {"event": "eval", "step": at, "accuracy": acc, "macro_f1": f1,
                 "seconds": round(seconds, 3)}
            )  # fmt: skip
            say(
                f"eval step {at}: accuracy {acc:.4f}, macro-F1 {f1:.4f} "
                f"({report['samples']} {task.unit}, {seconds:.1f} s)"
            )
            if final:
                result.evaluation = report
                _write_evaluation(task, report, mistakes, run.work, at)
                say(E.format_report(report))
        D.barrier(dist)
        run.timer.exclude(time.perf_counter() - began)

    # --- the loop ---------------------------------------------------------------------
    # On CUDA the prefetch thread also copies each batch to the GPU on a stream of its own,
    # so the copy overlaps the previous step (prefetch.py); the .to() below is then a no-op.
    on_cuda = dist.device.type == "cuda"
    feed = Prefetcher(
        task.train, depth=2 * cfg.grad_accum + 2, pin=on_cuda,
        device=dist.device if on_cuda and COPY_AHEAD else None,
    )  # fmt: skip
    data_state = feed.state  # the data position after the last batch trained on
    timer = run.timer
    t_start = time.perf_counter()
    loss_sum = torch.zeros((), device=dist.device)  # summed on the device: no sync per step
    grad_norm: Any = None
    step = start_step
    model.train()
    try:
        while step < cfg.steps:
            micro = []
            for _ in range(cfg.grad_accum):
                batch, waited = feed.next()
                timer.waited(waited)
                micro.append(batch)
            # Every rank must leave the loop at the same step or the next collective hangs.
            if D.control_all_reduce(dist, [int(stop.requested)])[0]:
                result.stopped = stop.reason or "a stop request on another rank"
                break

            for i, (inputs, labels) in enumerate(micro):
                inputs = tuple(t.to(dist.device, non_blocking=True) for t in inputs)
                labels = labels.to(dist.device, non_blocking=True)
                if not task.prepare_in_step:
                    inputs = task.prepare(inputs, True)
                last = i == len(micro) - 1
                if graphs:
                    # A new step: the last replay's outputs (loss, gradients) are consumed.
                    torch.compiler.cudagraph_mark_step_begin()
                with D.no_sync(wrapped, strategy, last), precision.autocast():
                    loss = step_fn(labels, *inputs) / samples_per_step
                precision.backward(loss)
                loss_sum += loss.detach()

            grad_norm = optimizer_step(model, optimizer, scheduler, precision.scaler, cfg.grad_clip)
            step += 1
            data_state = feed.state
            timer.step(samples_per_step)

            if run.log_due(step):
                # The one sync of the interval: reading the loss waits for the device.
                loss_val = float(D.all_reduce_mean(loss_sum, dist)) / timer.steps
                loss_sum.zero_()
                t = timer.interval()
                per_device = t["items_per_s"]
                run.record(
                    {
                        "step": step,
                        "loss": round(loss_val, 6),
                        "lr": scheduler.get_last_lr()[0],
                        "grad_norm": None if grad_norm is None else round(float(grad_norm), 4),
                        "samples_per_s": round(per_device * dist.world_size, 1),
                        "mfu": round_or_none(mfu(task.flops_per_sample or 0.0, per_device, peak)),
                        "peak_mem_gib": round(peak_memory_gib(dist.device), 3),
                        "data_wait": round(t["data_wait_share"], 4),
                        "interval_s": round(t["wall_s"], 4),
                        "steps_in_interval": int(t["steps"]),
                        "elapsed_s": round(time.perf_counter() - t_start, 2),
                    },
                    "samples_per_s",
                    f"{task.unit}/s",
                )

            stop_here = run.stop_after_reached(step)
            if run.checkpoint_due(step, stop_here):
                run.save(step, loss_sum, data_state)
            if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
                evaluate_now(step, final=False)
            if stop_here:
                break
    finally:
        feed.close()

    run.end_loop(step, loss_sum, data_state)
    if result.completed:
        evaluate_now(step, final=True)
    run.close(title=task.recipe)
    if dist.is_main and result.completed and cfg.export:
        _write_final(task, model, meta, result, run.work)
        say(f"model saved in {run.work / FINAL}")
    D.barrier(dist)
    return result


def _cuda_graphs(
    cfg: ClassifyConfig, task: ClassifyTask, dist: D.Dist, strategy: str, compiled: bool
) -> bool:
    """Whether the compiled step runs as CUDA graphs: on by default wherever the step
    allows them (--no-cuda-graphs turns them off; --cuda-graphs where they cannot run is an
    error). A replay writes its outputs (the gradients too) into the same memory every
    time, so it needs fixed shapes (the task's batches all alike), one micro-step per
    optimizer step (accumulated gradients would be overwritten by the next micro-step's
    replay) and one process (DDP's all-reduce hooks run inside the backward). What they
    gave on an H100: docs/performance.md."""
    reasons = []
    if not compiled or dist.device.type != "cuda":
        reasons.append("a compiled step on CUDA")
    if not task.static_shapes:
        reasons.append(f"batches of one shape ({task.recipe} varies them)")
    if cfg.grad_accum != 1:
        reasons.append("--grad-accum 1")
    if strategy != "none":
        reasons.append("one process")
    if cfg.cuda_graphs and reasons:
        raise UsageError(
            f"--cuda-graphs needs {', '.join(reasons)}", "drop --cuda-graphs, or meet those"
        )
    return cfg.cuda_graphs is not False and not reasons


def _check_same_labels(run: Path, labels: list[str]) -> None:
    """A resume trains the classes of the run: another label set would not fit its head
    (or worse, fit it with the classes in another order)."""
    try:
        before = read_meta(run).get("labels")
    except UsageError:
        return  # no classifier.json: the checkpoint load decides
    if before == labels:
        return
    before = [str(x) for x in before] if isinstance(before, list) else []
    new = sorted(set(labels) - set(before))
    gone = sorted(set(before) - set(labels))
    detail = f"{len(labels)} classes, the run has {len(before)}"
    if new:
        detail += "; new: " + ", ".join(new[:5]) + (" ..." if len(new) > 5 else "")
    if gone:
        detail += "; missing: " + ", ".join(gone[:5]) + (" ..." if len(gone) > 5 else "")
    raise UsageError(
        f"cannot resume {run}: the data has {detail}",
        "resume with the run's data, or start a new run with another --out",
    )


def _evaluate(
    task: ClassifyTask, model: Any, precision: Any, device: Any
) -> tuple[dict[str, Any], list[Mistake]]:
    """The whole evaluation set through the plain model (not the compiled training graph:
    evaluation mode would recompile it), in eval mode, without gradients."""
    true: list[int] = []
    predicted: list[int] = []
    mistakes: list[Mistake] = []
    model.eval()
    try:
        with torch.no_grad():
            for inputs, labels, ids in task.evaluate():
                inputs = task.prepare(tuple(t.to(device) for t in inputs), False)
                with precision.autocast():
                    logits = model(*inputs)
                probs = torch.softmax(logits.float(), dim=-1).cpu()
                conf, pred = probs.max(dim=-1)
                for j, (t, p) in enumerate(zip(labels.tolist(), pred.tolist(), strict=True)):
                    true.append(t)
                    predicted.append(p)
                    if t != p:
                        mistakes.append(Mistake(ids[j], t, p, float(conf[j])))
    finally:
        model.train()
    if not true:
        raise UsageError("the evaluation set is empty", "give --val, or a larger --val-fraction")
    report = E.report(E.confusion_matrix(true, predicted, len(task.labels)), task.labels)
    mistakes.sort(key=lambda m: -m.confidence)  # the most confident mistakes first
    return report, mistakes[:MAX_MISTAKES]


def _write_evaluation(
    task: ClassifyTask, report: dict[str, Any], mistakes: list[Mistake], out: Path, step: int
) -> None:
    data = {
        "step": step,
        **report,
        "mistakes": [
            {"id": m.id, "true": task.labels[m.true], "predicted": task.labels[m.predicted],
             "confidence": round(m.confidence, 4)}
            for m in mistakes
        ],
    }  # fmt: skip
    write_atomically(out / "eval.json", json.dumps(data, indent=2) + "\n")
    E.plot_confusion(report, out / "confusion.png", title=f"{task.recipe}, step {step}")
    if task.report_mistakes is not None and mistakes:
        task.report_mistakes(mistakes, out)


def _write_final(
    task: ClassifyTask, model: Any, meta: dict[str, Any], result: RunResult, out: Path
) -> None:
    """OUT/final: classifier.json, model.safetensors and the recipe's files, all or nothing."""
    from safetensors.torch import save_model

    def fill(tmp: Path) -> None:
        evaluation = result.evaluation or {}
        summary = {k: evaluation[k] for k in ("accuracy", "macro_f1", "samples") if k in evaluation}
        write_meta(tmp, {**meta, "step": result.step, "evaluation": summary})
        save_model(model, str(tmp / FINAL_WEIGHTS))  # handles tied weights, unlike save_file
        if task.save_extra is not None:
            task.save_extra(tmp)

    write_final(out, fill)
