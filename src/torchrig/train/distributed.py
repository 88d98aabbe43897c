"""One process per device, as torchrun starts them; how the model is spread over them.

    Dist.from_env()   rank, local rank and world size from torchrun's variables (a plain
                      `python` run is rank 0 of 1); device cuda:LOCAL_RANK or cpu; backend
                      nccl on CUDA, gloo on CPU
    choose_strategy   "ddp" when a full copy of the training state fits one device with room
                      for activations, "fsdp" when it does not
    wrap_model        DDP, or FSDP2 (`fully_shard` on each transformer block, then the root)

The model itself knows nothing about parallelism (torchtitan's rule): wrapping is a separate
step applied to a plain module.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from torchrig.errors import UsageError

Strategy = Literal["auto", "none", "ddp", "fsdp"]
STRATEGIES = ("auto", "none", "ddp", "fsdp")

# fp32 weights + fp32 gradients + AdamW's two fp32 moments.
TRAIN_STATE_BYTES_PER_PARAM = 16
# Share of device memory a full copy of the training state may take under DDP; the rest is
# for activations, the allocator's slack and NCCL buffers.
DDP_MEMORY_SHARE = 0.5


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number", "launch with torchrun") from None


@dataclass(frozen=True)
class Dist:
    rank: int
    local_rank: int
    world_size: int
    device: Any  # torch.device
    backend: str  # "nccl" or "gloo"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device: str = "auto") -> Dist:
        """Read torchrun's RANK/LOCAL_RANK/WORLD_SIZE. device: auto (CUDA when available),
        cuda or cpu."""
        import torch

        rank = _env_int("RANK", 0)
        local_rank = _env_int("LOCAL_RANK", 0)
        world = _env_int("WORLD_SIZE", 1)
        if device not in ("auto", "cuda", "cpu"):
            raise UsageError(f"unknown device {device!r}", "use auto, cuda or cpu")
        use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
        if use_cuda:
            if not torch.cuda.is_available():
                raise UsageError(
                    "--device cuda but no CUDA GPU is visible", "run `torchrig doctor`"
                )
            count = torch.cuda.device_count()
            if local_rank >= count:
                raise UsageError(
                    f"LOCAL_RANK {local_rank} but only {count} GPU(s) are visible",
                    "start no more processes per node than there are GPUs",
                )
            return cls(rank, local_rank, world, torch.device("cuda", local_rank), "nccl")
        return cls(rank, local_rank, world, torch.device("cpu"), "gloo")


# A gloo group for small host-side agreements (stop requests, token counts): a CPU
# all-reduce of a few integers needs no GPU sync, so the loop can do one every step.
_control_group: Any = None


def setup(dist: Dist, timeout_s: float = 1800.0) -> None:
    """Select the device and join the process group (only when there is more than one)."""
    import torch

    global _control_group

    if dist.device.type == "cuda":
        torch.cuda.set_device(dist.device)
    if dist.distributed and not torch.distributed.is_initialized():
        kwargs: dict[str, Any] = {}
        if dist.device.type == "cuda":
            # Binding the group to this device lets NCCL set up its communicator eagerly
            # and silences the "guessing device" barrier warning.
            kwargs["device_id"] = dist.device
        torch.distributed.init_process_group(
            dist.backend,
            rank=dist.rank,
            world_size=dist.world_size,
            timeout=dt.timedelta(seconds=timeout_s),
            **kwargs,
        )
        _control_group = (
            torch.distributed.new_group(backend="gloo") if dist.backend != "gloo" else None
        )


def teardown() -> None:
    import torch

    global _control_group
    _control_group = None
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier(dist: Dist) -> None:
    import torch

    if dist.distributed and torch.distributed.is_initialized():
        if dist.device.type == "cuda":
            torch.distributed.barrier(device_ids=[dist.device.index])
        else:
            torch.distributed.barrier()


def all_reduce_mean(value: Any, dist: Dist) -> Any:
    """Mean of a tensor over ranks (for logging the loss every rank saw)."""
    import torch

    if dist.distributed:
        value = value.detach().clone()
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.SUM)
        value /= dist.world_size
    return value


def control_all_reduce(dist: Dist, values: list[int]) -> list[int]:
    """Sum small integers over ranks on the CPU (gloo): no GPU sync, ~100 µs on one host."""
    import torch

    if not dist.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.int64)
    torch.distributed.all_reduce(tensor, group=_control_group)
    return [int(v) for v in tensor.tolist()]


def device_memory_bytes(dist: Dist) -> int | None:
    import torch

    if dist.device.type != "cuda":
        return None
    return int(torch.cuda.get_device_properties(dist.device).total_memory)


def choose_strategy(requested: str, n_params: int, dist: Dist) -> Literal["none", "ddp", "fsdp"]:
    """none on one process; otherwise ddp if the full training state fits comfortably on one
    device, else fsdp. An explicit request wins (checked for sense)."""
    if requested not in STRATEGIES:
        raise UsageError(f"unknown strategy {requested!r}", f"use one of: {', '.join(STRATEGIES)}")
    if not dist.distributed:
        return "none"
    if requested in ("ddp", "fsdp"):
        return requested  # type: ignore[return-value]
    if requested == "none":
        raise UsageError(
            f"--strategy none with {dist.world_size} processes",
            "use ddp or fsdp (or auto) under torchrun",
        )
    memory = device_memory_bytes(dist)
    need = n_params * TRAIN_STATE_BYTES_PER_PARAM
    if memory is not None and need > DDP_MEMORY_SHARE * memory:
        return "fsdp"
    return "ddp"


def wrap_model(
    module: Any,
    dist: Dist,
    strategy: Literal["none", "ddp", "fsdp"],
    blocks: Sequence[Any] = (),
    shard_root: Any = None,
    param_dtype: Any = None,
) -> Any:
    """Wrap for data parallelism. `module` is what the loop calls (it may hold the model
    plus the loss); `blocks` are the transformer blocks to shard one by one; `shard_root`
    is the module that owns the rest of the parameters (embeddings, final norm, head),
    default `module`.

    FSDP2 gathers a block's parameters just before the block runs and frees them after,
    so only one block is whole at a time; the root group holds what is outside the blocks.
    `param_dtype` (bf16) makes the gathers half the size; gradients are reduced in fp32.
    """
    import torch

    if strategy == "none":
        return module
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [dist.device.index] if dist.device.type == "cuda" else None
        # gradient_as_bucket_view: gradients live in the all-reduce buckets, saving one copy
        # of the gradients in memory and a copy per step.
        return DistributedDataParallel(module, device_ids=device_ids, gradient_as_bucket_view=True)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if not blocks:
        raise UsageError("FSDP needs the model's transformer blocks", "use --strategy ddp")
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for i, block in enumerate(blocks):
        # The last block's parameters are needed again at once by the backward pass:
        # keeping them gathered after forward saves one all-gather per step.
        fully_shard(block, mp_policy=mp, reshard_after_forward=i < len(blocks) - 1)
    fully_shard(shard_root if shard_root is not None else module, mp_policy=mp)
    return module


def no_sync(model: Any, strategy: str, sync: bool) -> Any:
    """Context for one micro-step of gradient accumulation: only the last one of an
    optimizer step should reduce gradients over ranks (the others would be wasted traffic)."""
    import contextlib

    if strategy == "ddp" and not sync:
        return model.no_sync()
    return contextlib.nullcontext()


def set_fsdp_sync(root: Any, strategy: str, sync: bool) -> None:
    """FSDP2's equivalent of no_sync: reduce-scatter only on the last micro-step."""
    if strategy == "fsdp":
        root.set_requires_gradient_sync(sync)
