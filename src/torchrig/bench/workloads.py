"""End-to-end training throughput of three reference workloads, eager and compiled, bf16.

    gpt2      GPT-2 124M (transformers config, random init), T=1024: tokens/s and MFU;
              B=16 eager, compiled with the causal-LM recipe's micro-batch for the GPU's
              memory (128 on 75 GiB or more) and its attention kernel (cuDNN on Hopper)
    resnet50  ResNet-50 (torchvision, random init), B=256 synthetic 224×224, channels_last
    bert      BERT-base sequence classification (transformers), B=32, T=128

Every step is a full training step: forward under bf16 autocast (fp32 master weights),
loss, backward, fused AdamW, zero_grad(set_to_none). TF32 is on for what stays fp32,
cuDNN benchmark mode picks convolution algorithms. Compiled runs wrap model + loss in
torch.compile (default mode); the first compiled step is reported as compile time, not
counted in throughput. Data are random tensors made on the GPU up front, so the numbers
are the GPU's, not a data loader's. Nothing is downloaded.

Choices that follow nanoGPT's practice: GPT-2's vocabulary padded to 50,304 (a multiple of
64: faster matmuls, 0.03% more parameters), dropout 0 for GPT-2 pre-training. BERT keeps
its default dropout 0.1 (fine-tuning) and, with every sequence full length, no mask.

Choices measured on an H100 with torch 2.11 (benchmarks/results/, docs/verify-bench.md):
- GPT-2's GELU is `gelu_pytorch_tanh`: the same tanh approximation as GPT-2's `gelu_new`,
  as one fused kernel instead of seven elementwise ones (eager 181k → 322k tokens/s).
- cuDNN attention is switched off for the workloads, so SDPA takes FlashAttention-2 (then
  memory-efficient): torch prefers cuDNN on sm_90; FlashAttention-2 was as fast or faster
  for these shapes (BERT eager +10%; the compiled gains seen once did not reproduce on
  other machines). `run_workload(..., cudnn_attention=True)` measures torch's default.
- GPT-2 runs with torchrig's training SDPA (torchrig.train.attention): under compile,
  transformers' "sdpa" passes a materialised causal mask, which rules out the Flash kernel;
  compiled GPT-2 was then no faster than eager (301k vs 320k tokens/s). Not yet re-measured.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torchrig.bench.model import resnet50_flops_per_image
from torchrig.train.attention import register_causal_sdpa
from torchrig.train.metrics import transformer_flops_per_token

WORKLOADS = ("gpt2", "resnet50", "bert")
UNITS = {"gpt2": "tokens/s", "resnet50": "images/s", "bert": "sequences/s"}


@dataclass
class Built:
    model: Any
    loss_fn: Callable[..., Any]
    batches: list[tuple[Any, ...]]
    items_per_step: int  # tokens, images or sequences
    flops_per_item: float
    config: dict[str, Any]


def _params(model: Any, skip: Callable[[str], bool]) -> int:
    # named_parameters() yields a tied weight once: GPT-2's wte/lm_head count once.
    return sum(p.numel() for n, p in model.named_parameters() if not skip(n))


def build_gpt2(
    torch: Any, batch: int = 16, seq: int = 1024, loss: str = "full", **overrides: Any
) -> Built:
    """loss "chunked": the output layer and cross-entropy in chunks of tokens
    (torchrig.train.linear_ce), as the causal-LM recipe's --loss chunked."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from torchrig.recipes.causal_lm.config import LOSS_CHUNK_TOKENS as chunk
    from torchrig.train.linear_ce import linear_cross_entropy

    cfg = GPT2Config(
        vocab_size=50304,
        n_positions=seq,
        n_embd=768,
        n_layer=12,
        n_head=12,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        use_cache=False,
        activation_function="gelu_pytorch_tanh",
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    # The training SDPA keeps FlashAttention under compile; transformers' own "sdpa" hands
    # compiled calls a materialised mask (torchrig.train.attention explains why).
    cfg._attn_implementation = register_causal_sdpa()
    model = GPT2LMHeadModel(cfg).cuda().train()
    n = _params(model, lambda name: name.endswith("wpe.weight"))
    f = torch.nn.functional

    def loss_fn(ids: Any, targets: Any) -> Any:
        if loss == "chunked":
            hidden = model.transformer(input_ids=ids).last_hidden_state
            loss_sum = linear_cross_entropy(
                hidden, model.lm_head.weight, targets, chunk, compute_dtype=torch.bfloat16
            )
            return loss_sum / targets.numel()
        logits = model(input_ids=ids).logits
        return f.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    batches = []
    for _ in range(3):
        data = torch.randint(0, 50257, (batch, seq + 1), device="cuda")
        batches.append((data[:, :-1].contiguous(), data[:, 1:].contiguous()))
    return Built(
        model,
        loss_fn,
        batches,
        items_per_step=batch * seq,
        flops_per_item=transformer_flops_per_token(n, cfg.n_layer, cfg.n_embd, seq),
        config={
            "batch": batch,
            "seq_len": seq,
            "params_for_flops": n,
            "vocab_size": cfg.vocab_size,
            "dropout": 0.0,
            "activation": cfg.activation_function,
            "attention": model.config._attn_implementation,
            "loss": loss,
        },
    )


def build_resnet50(torch: Any, batch: int = 256) -> Built:
    import torchvision

    model = torchvision.models.resnet50(weights=None).cuda().train()
    model = model.to(memory_format=torch.channels_last)
    f = torch.nn.functional

    def loss_fn(x: Any, y: Any) -> Any:
        return f.cross_entropy(model(x), y)

    batches = []
    for _ in range(2):
        x = torch.randn(batch, 3, 224, 224, device="cuda").to(memory_format=torch.channels_last)
        batches.append((x, torch.randint(0, 1000, (batch,), device="cuda")))
    return Built(
        model,
        loss_fn,
        batches,
        items_per_step=batch,
        flops_per_item=resnet50_flops_per_image(),
        config={"batch": batch, "image": [3, 224, 224], "memory_format": "channels_last"},
    )


def build_bert(torch: Any, batch: int = 32, seq: int = 128, **overrides: Any) -> Built:
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(num_labels=2, **overrides)
    model = BertForSequenceClassification(cfg).cuda().train()
    n = _params(model, lambda name: "embeddings" in name)
    f = torch.nn.functional

    def loss_fn(ids: Any, labels: Any) -> Any:
        return f.cross_entropy(model(input_ids=ids).logits, labels)

    batches = []
    for _ in range(3):
        ids = torch.randint(0, cfg.vocab_size, (batch, seq), device="cuda")
        batches.append((ids, torch.randint(0, 2, (batch,), device="cuda")))
    per_token = transformer_flops_per_token(n, cfg.num_hidden_layers, cfg.hidden_size, seq)
    return Built(
        model,
        loss_fn,
        batches,
        items_per_step=batch,
        flops_per_item=float(per_token * seq),
        config={
            "batch": batch,
            "seq_len": seq,
            "params_for_flops": n,
            "dropout": cfg.hidden_dropout_prob,
            "attention": model.config._attn_implementation,
        },
    )


BUILDERS: dict[str, Callable[..., Built]] = {
    "gpt2": build_gpt2,
    "resnet50": build_resnet50,
    "bert": build_bert,
}


def run_workload(
    torch: Any,
    name: str,
    compiled: bool,
    steps: int = 20,
    warmup: int = 3,
    cudnn_attention: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Train `steps` timed steps after warm-up; items/s from the median step time. The
    model, optimizer and compiled graphs are released before returning."""
    old_bench = torch.backends.cudnn.benchmark
    old_cudnn_sdp = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.enable_cudnn_sdp(cudnn_attention)
    try:
        if name == "gpt2":
            return _train_gpt2(torch, compiled, steps, warmup, overrides)
        result = _train(torch, name, compiled, steps, warmup, overrides)
        result["sdpa"] = "default order" if cudnn_attention else "cuDNN attention off"
        return result
    finally:
        torch.backends.cudnn.benchmark = old_bench
        torch.backends.cuda.enable_cudnn_sdp(old_cudnn_sdp)
        if compiled:
            torch._dynamo.reset()
        gc.collect()
        torch.cuda.empty_cache()


def _train_gpt2(
    torch: Any, compiled: bool, steps: int, warmup: int, overrides: dict[str, Any]
) -> dict[str, Any]:
    """GPT-2 with the causal-LM recipe's settings for this GPU: its attention kernel (cuDNN
    on Hopper) and, compiled, its micro-batch for the GPU's memory (128 on 75 GiB or more)
    and its loss and kernel tuning (config.LOSS_BY_MODEL, TUNE_KERNELS_BY_MODEL). Eager
    keeps B=16 and the full loss: unfused, a larger batch would need several times the
    memory."""
    from torch.nn.attention import sdpa_kernel

    from torchrig.recipes.causal_lm.config import loss_for, micro_batch_for, tune_kernels_for
    from torchrig.train.attention import backend_name, training_sdpa_backends
    from torchrig.train.precision import kernel_tuning

    device = torch.device("cuda")
    if compiled and "batch" not in overrides:
        memory = int(torch.cuda.get_device_properties(device).total_memory)
        overrides = {**overrides, "batch": micro_batch_for("gpt2-124m", memory, 16)}
    if compiled and "loss" not in overrides:
        overrides = {**overrides, "loss": loss_for("gpt2-124m")}
    backends = training_sdpa_backends(device)
    tune = tune_kernels_for("gpt2-124m") if compiled else "off"
    with sdpa_kernel(backends, set_priority=True), kernel_tuning(tune):
        result = _train(torch, "gpt2", compiled, steps, warmup, overrides)
    result["tune_kernels"] = tune
    result["sdpa"] = backend_name(backends)
    return result


def _train(
    torch: Any, name: str, compiled: bool, steps: int, warmup: int, overrides: dict[str, Any]
) -> dict[str, Any]:
    from torchrig.verify.checks import tf32

    torch.cuda.reset_peak_memory_stats()
    built = BUILDERS[name](torch, **overrides)
    fn = torch.compile(built.loss_fn) if compiled else built.loss_fn
    opt = torch.optim.AdamW(built.model.parameters(), lr=1e-4, fused=True)

    def step(i: int) -> Any:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fn(*built.batches[i % len(built.batches)])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    with tf32(torch, True):
        t0 = time.perf_counter()
        first_loss = float(step(0).detach())  # includes compilation when compiled
        first_step_s = time.perf_counter() - t0
        for i in range(1, warmup + 1):
            step(i)
        torch.cuda.synchronize()
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(steps)
        ]
        wall = time.perf_counter()
        last: Any = None
        for i, (start, end) in enumerate(events):
            start.record()
            last = step(i)
            end.record()
        torch.cuda.synchronize()
        wall_s = time.perf_counter() - wall
    step_ms = statistics.median(s.elapsed_time(e) for s, e in events)
    return {
        "items_per_s": built.items_per_step / (step_ms / 1e3),
        "items_per_s_wall": built.items_per_step * steps / wall_s,
        "step_ms": round(step_ms, 3),
        "first_step_s": round(first_step_s, 2),
        "steps": steps,
        "flops_per_item": built.flops_per_item,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "loss_first_last": [round(first_loss, 4), round(float(last.detach()), 4)],
        "config": built.config,
    }
