"""The shared training core: small pieces, each with one job, that recipes put together in
one readable loop (torchrig.recipes.causal_lm.train is the reference user).

    distributed.py  Dist (rank, world size, device) from torchrun's environment; DDP or
                    FSDP2 wrapping, chosen by whether the training state fits one device
    precision.py    bf16 autocast, fp16 with a GradScaler, or fp32; whether to compile
    optim.py        AdamW (fused on CUDA, no decay on biases and norms), cosine schedule
                    with warmup, gradient clipping
    metrics.py      step timing (data wait vs compute, no sync per step), tokens/s, MFU
                    against the device's datasheet peak, peak memory; JSONL, TensorBoard
                    and a loss-curve PNG
    checkpoint.py   atomic checkpoints (temporary folder, fsync, rename, manifest last),
                    keep the last N, exact resume (model, optimizer, schedule, scaler,
                    RNG, data position), loaded with weights_only=True
    signals.py      SIGTERM/SIGINT set a flag; the loop saves at the next step and exits 0
    prefetch.py     batches prepared in a background thread into pinned memory, each with
                    the data position after it (so a checkpoint records what was consumed)

Nothing here knows about a particular model or data format; torch is imported by these
modules, so the host CLI never imports this package.
"""
