"""Train a causal language model: the whole loop, top to bottom.

    python -m torchrig.recipes.causal_lm --preset tiny --data corpus.txt --out runs/x
    torchrun --nproc-per-node 8 -m torchrig.recipes.causal_lm --preset gpt2-124m ...

One process per device (torchrun). Each step: `grad_accum` micro-batches forward and
backward under autocast, gradients reduced over processes on the last one only, clipped,
one AdamW step, one schedule step. Every `log_every` steps one line of metrics; every
`ckpt_every` steps an atomic checkpoint. SIGTERM or SIGINT (a stop request) ends the loop
at the next step boundary with a checkpoint, and the process exits 0; `--resume` continues
from the newest complete checkpoint exactly where it stopped.

The pieces live in torchrig.train (distributed, precision, optim, metrics, checkpoint,
signals, prefetch); the data, tokenizer and model in this recipe's other modules.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

from torchrig.errors import UsageError
from torchrig.fsutil import write_atomically
from torchrig.recipes.causal_lm import data as data_mod
from torchrig.recipes.causal_lm import model as model_mod
from torchrig.recipes.causal_lm import serving
from torchrig.recipes.causal_lm.checks import check_before_work
from torchrig.recipes.causal_lm.config import (
    LOSS_CHUNK_TOKENS,
    TrainConfig,
    fit_to_device,
    loss_for,
    tune_kernels_for,
)
from torchrig.recipes.causal_lm.tokenizer import (
    load_or_train_tokenizer,
    load_tokenizer,
    will_reuse,
)
from torchrig.train import attention
from torchrig.train import distributed as D
from torchrig.train.heldout import HeldOut
from torchrig.train.linear_ce import linear_cross_entropy
from torchrig.train.metrics import mfu, peak_memory_gib, peak_tflops, round_or_none
from torchrig.train.optim import build_optimizer, build_scheduler, optimizer_step
from torchrig.train.precision import kernel_tuning, resolve_precision, should_compile
from torchrig.train.prefetch import Prefetcher
from torchrig.train.result import RunResult
from torchrig.train.scaffold import FINAL, Scaffold, find_checkpoint, staged_run, write_final
from torchrig.train.signals import StopFlag

Say = Callable[[str], None]
VAL_BATCHES = 8  # micro-batches per held-out evaluation


class CausalLMLoss(torch.nn.Module):  # type: ignore[misc]
    """The model plus its loss as one module, so compile and DDP see both: the compiled
    graph fuses the cross-entropy into the logits (no second full-size logits tensor).

    loss="chunked": the model up to its last hidden states, then the output layer and the
    loss together in chunks of tokens (torchrig.train.linear_ce), never the full logits."""

    def __init__(
        self,
        model: Any,
        loss: str = "full",
        chunk: int = LOSS_CHUNK_TOKENS,
        compute_dtype: Any = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.chunk = chunk
        self.compute_dtype = compute_dtype  # the chunked matmuls' (autocast's) dtype
        self.chunked = loss == "chunked"
        if self.chunked:
            model_mod.output_weight(model)  # a head it cannot take over fails now

    def forward(self, x: Any, y: Any) -> Any:
        # Summed, not averaged: the loop divides by the number of target tokens of the
        # whole step (all micro-batches, all ranks), so fine-tuning batches with different
        # numbers of response tokens weigh each token the same, as one big batch would.
        if self.chunked:
            hidden = model_mod.final_hidden_states(self.model, x)
            weight = model_mod.output_weight(self.model)
            return linear_cross_entropy(
                hidden, weight, y, self.chunk, compute_dtype=self.compute_dtype
            )
        logits = self.model(input_ids=x).logits
        return F.cross_entropy(
            logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-100, reduction="sum"
        )


def _tokenizer_and_data(
    cfg: TrainConfig, out: Path, dist: D.Dist, say: Say
) -> tuple[Any, Any, int]:
    """(tokenizer or None, batches, vocab size). Rank 0 trains the tokenizer and tokenizes
    the text into `out` (the run's staging folder); the other ranks wait, then read what it
    wrote."""
    tok_dir = out / "tokenizer"
    tokenizer: Any = None
    if cfg.tokens is None:
        texts = [cfg.sft] if cfg.sft is not None else list(cfg.data)
        given = cfg.tokenizer
        if given is None and cfg.model_path is not None:
            # The model's own tokenizer when its folder has one, else train one on the data.
            given = cfg.model_path if (cfg.model_path / "tokenizer.json").exists() else None
        if dist.is_main:
            reused = given is None and will_reuse(texts, tok_dir, cfg.vocab_size)
            tokenizer = load_or_train_tokenizer(given, texts, tok_dir, cfg.vocab_size)
            if given is None:
                how = "reused, trained on this data before" if reused else "trained on the data"
                say(f"tokenizer: {len(tokenizer)} tokens, {how} ({cfg.out / 'tokenizer'})")
        D.barrier(dist)
        if not dist.is_main:
            tokenizer = load_tokenizer(Path(given) if given is not None else tok_dir)
    batches: Any
    if cfg.sft is not None:
        batches = data_mod.SftBatches(
            cfg.sft, tokenizer, cfg.micro_batch, cfg.seq_len, cfg.seed, dist.rank, dist.world_size
        )
        if batches.truncated:
            say(
                f"sft: {batches.truncated} of {batches.n_records} records are longer than "
                f"--seq-len {cfg.seq_len} and were cut (their response ends early, with no "
                "EOS); raise --seq-len to keep them whole"
            )
        return tokenizer, batches, len(tokenizer)
    if cfg.tokens is not None:
        bin_path = Path(cfg.tokens)
        meta_path = data_mod.sidecar_path(bin_path)
        try:
            vocab = int(json.loads(meta_path.read_text(encoding="utf-8"))["vocab_size"])
        except (OSError, ValueError, KeyError, TypeError):
            raise UsageError(
                f"{bin_path}: no vocab_size in {meta_path.name}",
                "make the token file with tokenize_to_bin (or --data TEXT once)",
            ) from None
        if cfg.tokenizer is not None:
            tokenizer = load_tokenizer(cfg.tokenizer)
    else:
        bin_path = out / "data" / "train.bin"
        if dist.is_main:
            start = time.perf_counter()
            data_mod.tokenize_to_bin(list(cfg.data), tokenizer, bin_path)
            say(f"tokens: {bin_path} ({time.perf_counter() - start:.1f} s)")
        D.barrier(dist)
        vocab = len(tokenizer)
    batches = data_mod.PretrainBatches(
        bin_path, cfg.micro_batch, cfg.seq_len, cfg.seed, dist.rank, dist.world_size,
        val_fraction=cfg.val_fraction,
    )  # fmt: skip
    return tokenizer, batches, vocab


def _heldout(cfg: TrainConfig, batches: Any, dist: D.Dist) -> HeldOut | None:
    """The held-out evaluation of --val-fraction: the same windows of the held-out tokens
    every time (torchrig.train.heldout). Made now, so too few tokens fail before training;
    its memmap stays open when the staging folder holding the token file is committed."""
    if not cfg.val_fraction:
        return None
    val = data_mod.PretrainBatches(
        batches.bin_path, cfg.micro_batch, cfg.seq_len, cfg.seed + 1, dist.rank,
        dist.world_size, split="val", val_fraction=cfg.val_fraction,
    )  # fmt: skip

    def from_the_start() -> Any:
        val.step = 0  # batch k is a function of (seed, rank, k): the same windows again
        return val

    return HeldOut(from_the_start, cfg.eval_every or cfg.ckpt_every, VAL_BATCHES)


def _build_model(cfg: TrainConfig, vocab: int) -> Any:
    # The same seed on every rank gives every rank the same initial weights (DDP also
    # broadcasts rank 0's, FSDP does not: it shards what each rank made).
    torch.manual_seed(cfg.seed)
    if cfg.model_path is not None:
        model = model_mod.load_pretrained(cfg.model_path)
        if model.get_input_embeddings().weight.shape[0] < vocab:
            raise UsageError(
                f"the tokenizer has {vocab} tokens, more than the model's embedding",
                "use the tokenizer that came with the model (--tokenizer)",
            )
    else:
        model = model_mod.build_model(cfg.model, vocab, max_seq_len=cfg.seq_len)
    if cfg.lora:
        model = model_mod.apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)
    return model


def _export(
    model: Any, tokenizer: Any, out: Path, strategy: str, dist: D.Dist, base: Path | None = None
) -> None:
    """OUT/final: the trained model in Hugging Face format (LoRA: the adapter, naming its
    `base` so it loads from any folder), with the tokenizer's real BOS/EOS ids (serving.py)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = None
    if strategy == "fsdp":  # gather the shards (collective), rank 0 writes
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(model, options=opts)
    if dist.is_main:

        def fill(tmp: Path) -> None:
            serving.stamp_token_ids(model, tokenizer)
            model.save_pretrained(tmp, state_dict=state) if state else model.save_pretrained(tmp)
            serving.finish_adapter(tmp, model, base)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)

        write_final(out, fill)
    D.barrier(dist)


def train(cfg: TrainConfig, stop: StopFlag | None = None, say: Say = print) -> RunResult:
    cfg.check()
    stop = stop or StopFlag()
    dist = D.Dist.from_env(cfg.device)
    D.setup(dist)
    try:
        with kernel_tuning(tune_kernels_for(cfg.model, cfg.tune_kernels)):
            result = _train(cfg, stop, dist, say if dist.is_main else (lambda _: None))
        # Every rank done before any tears down: a rank leaving first (rank 0 hosts the
        # rendezvous store) can abort a peer still closing its gloo connections.
        D.barrier(dist)
        return result
    finally:
        D.teardown()


def _train(cfg: TrainConfig, stop: StopFlag, dist: D.Dist, say: Say) -> RunResult:
    ckpts, latest = find_checkpoint(cfg, dist, say)
    # The step shaped for this GPU's memory and the number of processes (fit_to_device).
    cfg = fit_to_device(cfg, D.device_memory_bytes(dist), dist.world_size)
    check_before_work(cfg, dist.device)  # the model and the step's memory, before any file
    with staged_run(cfg, dist, say, ckpts, latest) as run:
        return _run(cfg, stop, dist, say, run)


def _run(cfg: TrainConfig, stop: StopFlag, dist: D.Dist, say: Say, run: Scaffold) -> RunResult:
    out = run.work  # the staging folder until the run is known to work, then cfg.out
    if dist.is_main:
        write_atomically(out / "config.json", json.dumps(cfg.to_json(), indent=2) + "\n")

    # --- data and model ---------------------------------------------------------------
    tokenizer, batches, vocab = _tokenizer_and_data(cfg, out, dist, say)
    # Now, while the token file is where it was made (a resume commits the staging folder).
    heldout = _heldout(cfg, batches, dist)
    model = _build_model(cfg, vocab).to(dist.device)
    precision = resolve_precision(cfg.precision, dist.device)
    n_params = model_mod.count_parameters(model)
    strategy = D.choose_strategy(cfg.strategy, n_params, dist)
    flops_per_token = model_mod.flops_per_token(model, cfg.seq_len)
    # The attention kernel per device (cuDNN on Hopper, FlashAttention-2 elsewhere): set
    # around each forward, so compile traces the chosen kernel (torchrig.train.attention).
    sdpa = attention.training_sdpa_backends(dist.device, cfg.attention)
    loss_kind = loss_for(cfg.model, cfg.loss, strategy)

    # Parallelism wraps the plain model (which knows nothing about it). DDP: compile the
    # wrapped module whole (DDP's buckets split the graph so gradient all-reduces overlap
    # the backward pass). FSDP2: compile each transformer block (torchtitan's way), so the
    # per-block all-gathers stay outside the compiled graphs.
    compiled = should_compile(cfg.compile, dist.device)
    blocks = model_mod.transformer_blocks(model) if strategy == "fsdp" else []
    if compiled and strategy == "fsdp":
        for block in blocks:
            block.compile()
    loss_module = CausalLMLoss(model, loss_kind, cfg.loss_chunk, precision.dtype or torch.float32)
    wrapped = D.wrap_model(
        loss_module,
        dist,
        strategy,
        blocks=blocks,
        shard_root=model,
        param_dtype=precision.dtype if precision.name == "bf16" else None,
    )
    step_fn = torch.compile(wrapped) if compiled and strategy != "fsdp" else wrapped

    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    scheduler = build_scheduler(optimizer, cfg.warmup, cfg.steps, cfg.min_lr_ratio)
    # After the same-seed init: per-rank streams for anything random during training.
    torch.manual_seed(cfg.seed + dist.rank)

    start_step = run.resume(
        model=model, optimizer=optimizer, scheduler=scheduler, scaler=precision.scaler,
        batches=batches, meta={"config": cfg.to_json()},
    )  # fmt: skip
    peak, peak_note = peak_tflops(dist.device, precision.name)
    result = run.begin(start_step, strategy=strategy, precision=precision.name, compiled=compiled)
    tokens_per_step = cfg.micro_batch * cfg.seq_len * cfg.grad_accum  # per process
    say(
        f"{cfg.model_path or cfg.model}: {n_params / 1e6:.1f}M parameters | {dist.world_size} "
        f"process(es), {strategy} | {precision.name}{' + compile' if compiled else ''} | "
        f"{attention.backend_name(sdpa)} | {loss_kind} loss | "
        f"{tokens_per_step * dist.world_size} tokens/step | {peak_note}"
    )
    if run.nothing_to_do():
        return result

    # --- the loop ---------------------------------------------------------------------
    # Batches come from a background thread, pinned, so the copy to the GPU overlaps.
    feed = Prefetcher(batches, depth=2 * cfg.grad_accum + 2, pin=dist.device.type == "cuda")
    data_state = feed.state  # the data position after the last batch trained on
    timer = run.timer
    t_start = time.perf_counter()
    loss_sum = torch.zeros((), device=dist.device)  # summed on the device: no sync per step
    grad_norm: Any = None
    step = start_step
    try:
        while step < cfg.steps:
            micro = []
            for _ in range(cfg.grad_accum):
                (x, y), waited = feed.next()
                timer.waited(waited)
                micro.append((x, y))
            # Target tokens of the whole step, counted on the host (y is still on the CPU),
            # and the stop request, agreed by all ranks in one small CPU all-reduce: every
            # rank must leave the loop at the same step or the next collective hangs.
            local = sum(int((y != -100).sum()) for _, y in micro)
            n_targets, stop_votes = D.control_all_reduce(dist, [local, int(stop.requested)])
            if stop_votes:
                result.stopped = stop.reason or "a stop request on another rank"
                break

            for i, (x, y) in enumerate(micro):
                x = x.to(dist.device, non_blocking=True)
                y = y.to(dist.device, non_blocking=True)
                last = i == len(micro) - 1
                D.set_fsdp_sync(model, strategy, last)
                with (
                    D.no_sync(wrapped, strategy, last),
                    precision.autocast(),
                    sdpa_kernel(sdpa, set_priority=True),
                ):
                    # × world_size: DDP and FSDP average gradients over ranks; we want the
                    # sum over ranks divided by the step's total number of target tokens.
                    loss = step_fn(x, y) * (dist.world_size / max(n_targets, 1))
                precision.backward(loss)
                loss_sum += loss.detach()

            grad_norm = optimizer_step(model, optimizer, scheduler, precision.scaler, cfg.grad_clip)
            step += 1
            data_state = feed.state
            timer.step(tokens_per_step)

            if run.log_due(step):
                # The one sync of the interval: reading the loss waits for the GPU.
                loss_val = float(D.all_reduce_mean(loss_sum, dist)) / timer.steps
                loss_sum.zero_()
                t = timer.interval()
                per_device = t["items_per_s"]
                norm = None
                if grad_norm is not None:
                    full = getattr(grad_norm, "full_tensor", None)  # FSDP: a DTensor
                    norm = float(full() if callable(full) else grad_norm)
                run.record(
                    {
                        "step": step,
                        "loss": round(loss_val, 6),
                        "lr": scheduler.get_last_lr()[0],
                        "grad_norm": None if norm is None else round(norm, 4),
                        "tokens_per_s": round(per_device * dist.world_size, 1),
                        "mfu": round_or_none(mfu(flops_per_token, per_device, peak)),
                        "peak_mem_gib": round(peak_memory_gib(dist.device), 3),
                        "data_wait": round(t["data_wait_share"], 4),
                        "interval_s": round(t["wall_s"], 4),
                        "steps_in_interval": int(t["steps"]),
                        "elapsed_s": round(time.perf_counter() - t_start, 2),
                    },
                    "tokens_per_s",
                    "tok/s",
                )

            stop_here = run.stop_after_reached(step)
            if run.checkpoint_due(step, stop_here):
                run.save(step, loss_sum, data_state)
            if heldout is not None and heldout.due(step, cfg.steps):
                began = time.perf_counter()
                rec = heldout.evaluate(model, step, dist, precision.autocast)
                run.log.write(rec)
                say(f"eval step {step}: val loss {rec['val_loss']:.4f}, "
                    f"perplexity {rec['perplexity']:.2f}")  # fmt: skip
                timer.exclude(time.perf_counter() - began)
            if stop_here:
                break
    finally:
        feed.close()

    run.end_loop(step, loss_sum, data_state)
    run.close(title=f"{cfg.model_path or cfg.model}")
    if result.completed and cfg.export:
        _export(model, tokenizer, run.work, strategy, dist, cfg.model_path)
        say(f"model saved in {run.work / FINAL}")
    return result
