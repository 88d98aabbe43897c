"""The chunked linear + cross-entropy (torchrig.train.linear_ce, the causal-LM recipe's
--loss chunked): the same loss and gradients as the full-logits path, in fp32 and under
bf16 autocast, with ignored targets, with GPT-2's tied output weight, and traced whole by
torch.compile. Its speed is a GPU question (benchmarks/train_causal_lm.py --variants)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from torchrig.recipes.causal_lm.model import build_model
from torchrig.recipes.causal_lm.train import CausalLMLoss
from torchrig.train.linear_ce import linear_cross_entropy


def _full(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = F.linear(hidden, weight)
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
    )


def _inputs(
    n: int = 300, d: int = 32, vocab: int = 200
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, d, generator=gen)
    weight = torch.randn(vocab, d, generator=gen) * 0.2
    targets = torch.randint(0, vocab, (n,), generator=gen)
    targets[::7] = -100  # padding / prompt tokens
    return hidden, weight, targets


def _loss_and_grads(fn: Any, hidden: Any, weight: Any, targets: Any, bf16: bool) -> list[Any]:
    h = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = fn(h, w, targets)
    (loss * 0.5).backward()  # an incoming gradient other than 1 reaches the stored ones
    return [loss.detach(), h.grad, w.grad]


@pytest.mark.parametrize("chunk", [64, 300, 1000])
def test_fp32_matches_the_full_logits_loss(chunk: int) -> None:
    # 300 tokens: chunks that divide them, one chunk exactly, and one larger than all.
    args = _inputs()
    want = _loss_and_grads(_full, *args, bf16=False)
    got = _loss_and_grads(lambda h, w, t: linear_cross_entropy(h, w, t, chunk), *args, bf16=False)
    assert got[0].dtype == torch.float32
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_bf16_autocast_matches_the_full_logits_loss() -> None:
    # Both paths run the matmuls in bf16: the loss agrees to bf16's logit rounding, the
    # gradients to a few bf16 ulps; against fp32 both err alike.
    args = _inputs()
    want = _loss_and_grads(_full, *args, bf16=True)
    got = _loss_and_grads(lambda h, w, t: linear_cross_entropy(h, w, t, 64), *args, bf16=True)
    exact = _loss_and_grads(_full, *args, bf16=False)
    torch.testing.assert_close(got[0], want[0], rtol=1e-3, atol=1e-2)
    for a, b, ref in zip(got[1:], want[1:], exact[1:], strict=True):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)
        assert (a - ref).abs().max() <= 2 * (b - ref).abs().max() + 1e-3
    # The dtype given (as the recipe does, from its precision) instead of read from
    # autocast: the same numbers.
    given = _loss_and_grads(
        lambda h, w, t: linear_cross_entropy(h, w, t, 64, compute_dtype=torch.bfloat16),
        *args,
        bf16=False,
    )
    for a, b in zip(given, got, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_only_ignored_targets_give_zero_loss_and_gradients() -> None:
    hidden, weight, targets = _inputs(n=40)
    targets[:] = -100
    loss, gh, gw = _loss_and_grads(
        lambda h, w, t: linear_cross_entropy(h, w, t, 16), hidden, weight, targets, bf16=False
    )
    assert float(loss) == 0.0 and not gh.any() and not gw.any()


def test_bad_arguments_are_one_clear_error() -> None:
    hidden, weight, targets = _inputs(n=8)
    with pytest.raises(ValueError, match="chunk_tokens"):
        linear_cross_entropy(hidden, weight, targets, 0)
    with pytest.raises(ValueError, match="no tokens"):
        linear_cross_entropy(hidden[:0], weight, targets[:0], 16)


def _tiny() -> Any:
    torch.manual_seed(0)
    return build_model("tiny-gpt2", 300, max_seq_len=32)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 300, (3, 32), generator=gen)
    y = torch.randint(0, 300, (3, 32), generator=gen)
    y[:, :5] = -100  # an SFT prompt: no loss on it
    return x, y


def _grads(module: Any, x: Any, y: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    module.zero_grad(set_to_none=True)
    loss = module(x, y)
    loss.backward()
    # A compiled module names its parameters "_orig_mod.<name>".
    return loss.detach(), {
        n.removeprefix("_orig_mod."): p.grad.clone() for n, p in module.named_parameters()
    }


def test_tied_output_weight_gets_both_gradients() -> None:
    # GPT-2's lm_head is its token embedding: the chunked loss's weight gradient and the
    # embedding lookup's must add up, as with the full logits.
    model = _tiny()
    assert model.lm_head.weight is model.transformer.wte.weight
    x, y = _batch()
    loss_full, grads_full = _grads(CausalLMLoss(model, "full"), x, y)
    loss_chunked, grads_chunked = _grads(CausalLMLoss(model, "chunked", 40), x, y)
    torch.testing.assert_close(loss_chunked, loss_full, rtol=1e-5, atol=1e-4)
    assert grads_chunked.keys() == grads_full.keys()
    for name, grad in grads_full.items():
        torch.testing.assert_close(grads_chunked[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_torch_compile_traces_it_in_one_graph() -> None:
    # fullgraph=True fails on any graph break: dynamo traces the autograd Function (forward
    # and backward) into the compiled step. aot_eager runs dynamo and AOTAutograd, the parts
    # a custom Function can break, without inductor's slow C++ builds on a CPU.
    model = _tiny()
    x, y = _batch()
    eager_loss, eager_grads = _grads(CausalLMLoss(model, "chunked", 40), x, y)
    # As the recipe builds it: 3 chunks of 96 tokens (40, 40, 16), the dtype given.
    module = CausalLMLoss(model, "chunked", 40, compute_dtype=torch.float32)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    torch._dynamo.reset()
    try:
        loss, grads = _grads(compiled, x, y)
    finally:
        torch._dynamo.reset()
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-5)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(grads[name], grad, msg=name)
