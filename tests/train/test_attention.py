"""The training SDPA: same numbers as transformers' "sdpa", and Flash-eligible under compile."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from torchrig.recipes.causal_lm.model import build_config
from torchrig.train.attention import CAUSAL_SDPA, register_causal_sdpa


def _pair(preset: str) -> tuple[Any, Any]:
    register_causal_sdpa()
    torch.manual_seed(0)
    # Two configs: from_config records the attention implementation on the config it gets.
    # Train mode: what the recipes run.
    reference = AutoModelForCausalLM.from_config(
        build_config(preset, 500, max_seq_len=32), attn_implementation="sdpa"
    ).train()
    ours = AutoModelForCausalLM.from_config(
        build_config(preset, 500, max_seq_len=32), attn_implementation=CAUSAL_SDPA
    ).train()
    assert reference.config._attn_implementation == "sdpa"
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def _sdpa_calls(fn: Any, *args: Any) -> list[str]:
    """The SDPA calls in the graphs dynamo captures (no kernels compiled: fast on a CPU)."""
    graphs: list[Any] = []

    def capture(gm: Any, _: Any) -> Any:
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch.compile(fn, backend=capture)(*args)
    return [line for g in graphs for line in g.code.splitlines() if "scaled_dot_product" in line]


@pytest.mark.parametrize("preset", ["tiny-gpt2", "tiny-llama"])
def test_same_logits_as_transformers_sdpa(preset: str) -> None:
    reference, ours = _pair(preset)
    ids = torch.randint(0, 500, (3, 32))
    padding = torch.ones_like(ids)
    padding[0, 20:] = 0
    with torch.no_grad():
        assert torch.equal(reference(input_ids=ids).logits, ours(input_ids=ids).logits)
        # A padding mask goes to transformers' own mask: still the same numbers.
        assert torch.equal(
            reference(input_ids=ids, attention_mask=padding).logits,
            ours(input_ids=ids, attention_mask=padding).logits,
        )


@pytest.mark.parametrize("preset", ["tiny-gpt2", "tiny-llama"])
def test_compiled_training_calls_use_is_causal_without_a_mask(preset: str) -> None:
    reference, ours = _pair(preset)
    ids = torch.randint(0, 500, (2, 32))
    ours_calls = _sdpa_calls(lambda x: ours(input_ids=x).logits, ids)
    reference_calls = _sdpa_calls(lambda x: reference(input_ids=x).logits, ids)
    layers = ours.config.num_hidden_layers
    assert len(ours_calls) == layers
    assert all("attn_mask = None" in c and "is_causal = True" in c for c in ours_calls)
    # What this module exists for: transformers' "sdpa" hands compiled calls a mask tensor,
    # which rules out the Flash kernel (torch < 2.14).
    if torch.__version__ < "2.14":
        assert all("is_causal = False" in c for c in reference_calls)
