"""Checkpoints that are whole or absent, and everything an exact resume needs.

Layout of a run's checkpoint folder:

    checkpoints/
      step-00001000/          one complete checkpoint
        model.pt              model weights (full, unsharded: loadable on any world size)
        optimizer.pt          optimizer state, keyed by parameter name
        trainer.pt            step, scheduler, GradScaler, RNG states and data position of
                              every rank, the run's config
        manifest.json         written last: step, file names and sizes, versions
      step-00002000/
      .tmp-step-00003000.pid4242   being written (or left by a crash: removed later)

Writing: everything goes into a temporary folder beside the final one; each file is
fsync'ed, the manifest is written last, the folder is fsync'ed, renamed to step-NNNNNNNN
(an atomic rename within one file system), and the parent folder is fsync'ed so the rename
itself survives a power cut. Only then are checkpoints beyond the newest `keep_last`
removed (renamed to a temporary name first, so a half-deleted one never looks complete).
A kill at any moment leaves the previous checkpoints untouched.

Reading: `latest()` takes the newest step-* folder whose manifest parses and whose files
all exist with the recorded sizes; temporaries left by dead processes are removed. Files
are loaded with `torch.load(weights_only=True)`: tensors and plain data only, so a
checkpoint cannot run code when loaded.

Sharded models (FSDP2) are gathered into full state dicts with torch.distributed.checkpoint's
state-dict helpers (every rank takes part, rank 0 writes), so one format serves every
strategy and a run can resume on a different number of GPUs (RNG and data positions then
restart from the seed, since they belong to ranks that no longer exist).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError

FORMAT = 1
MANIFEST = "manifest.json"
_STEP = re.compile(r"^step-(\d{8,})$")
_TMP = re.compile(r"^\.tmp-.*\.pid(\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    manifest: dict[str, Any] = field(compare=False, repr=False)

    def file(self, name: str) -> Path:
        return self.path / f"{name}.pt"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process of that id lives (a staging folder's writer, say)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


class CheckpointManager:
    """Atomic save, keep-last-N pruning and discovery of the latest complete checkpoint
    in one folder. Only one process (rank 0) writes to a folder."""

    def __init__(self, root: Path, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise UsageError(
                f"keep_last must be at least 1, not {keep_last}", "use --keep 1 or more"
            )
        self.root = Path(root)
        self.keep_last = keep_last

    # --- writing ------------------------------------------------------------------------

    def save(
        self, step: int, parts: Mapping[str, Any], meta: Mapping[str, Any] | None = None
    ) -> Path:
        """Write `parts` (name → object for torch.save) as checkpoint `step`; returns its
        folder. An existing checkpoint of the same step is replaced atomically."""
        import torch

        self.root.mkdir(parents=True, exist_ok=True)
        name = f"step-{step:08d}"
        tmp = self.root / f".tmp-{name}.pid{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            sizes: dict[str, int] = {}
            for part, obj in parts.items():
                target = tmp / f"{part}.pt"
                with target.open("wb") as handle:
                    torch.save(obj, handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                sizes[f"{part}.pt"] = target.stat().st_size
            manifest = {
                "format": FORMAT,
                "step": step,
                "files": sizes,
                "torch": torch.__version__,
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "meta": dict(meta or {}),
            }
            with (tmp / MANIFEST).open("w", encoding="utf-8") as handle:
                json.dump(manifest, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            _fsync_dir(tmp)
            final = self.root / name
            old: Path | None = None
            if final.exists():
                old = self.root / f".tmp-old-{name}.pid{os.getpid()}"
                final.rename(old)
            tmp.rename(final)
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.prune()
        return final

    def prune(self) -> None:
        """Remove complete checkpoints beyond the newest keep_last (and nothing else)."""
        for ckpt in self.complete()[: -self.keep_last]:
            doomed = self.root / f".tmp-del-{ckpt.path.name}.pid{os.getpid()}"
            ckpt.path.rename(doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    # --- reading ------------------------------------------------------------------------

    def _read_manifest(self, path: Path, step: int) -> dict[str, Any] | None:
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("step") != step:
            return None
        files = manifest.get("files")
        if not isinstance(files, dict) or not files:
            return None
        for fname, size in files.items():
            try:
                if (path / fname).stat().st_size != size:
                    return None
            except OSError:
                return None
        return manifest

    def complete(self) -> list[Checkpoint]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            match = _STEP.match(path.name)
            if not match or not path.is_dir():
                continue
            step = int(match.group(1))
            manifest = self._read_manifest(path, step)
            if manifest is not None:
                found.append(Checkpoint(step, path, manifest))
        return sorted(found, key=lambda c: c.step)

    def clean_stale(self) -> list[Path]:
        """Remove temporaries whose writer is no longer running."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        for path in self.root.iterdir():
            match = _TMP.match(path.name)
            if match and not pid_alive(int(match.group(1))):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed

    def latest(self, clean: bool = True) -> Checkpoint | None:
        """The newest complete checkpoint (None: there is none). Incomplete folders are
        skipped; with clean, temporaries of dead writers are removed."""
        if clean:
            self.clean_stale()
        done = self.complete()
        return done[-1] if done else None

    @staticmethod
    def load(ckpt: Checkpoint, part: str) -> Any:
        """Load one part on the CPU, tensors and plain data only."""
        import torch

        return torch.load(ckpt.file(part), map_location="cpu", weights_only=True, mmap=True)


# --- RNG states ---------------------------------------------------------------------------


def capture_rng(device: Any = None) -> dict[str, Any]:
    """Python, NumPy, torch CPU and (when `device` is CUDA) CUDA generator states, as plain
    data and tensors (what weights_only loading accepts)."""
    import numpy as np
    import torch

    np_state: Any = np.random.get_state()
    kind, keys, pos, has_gauss, gauss = np_state
    state: dict[str, Any] = {
        "python": random.getstate(),
        # int64: uint32 tensors have few operations; the values fit either way.
        "numpy": [
            str(kind),
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(gauss),
        ],
        "torch": torch.get_rng_state(),
    }
    if device is not None and getattr(device, "type", None) == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Mapping[str, Any], device: Any = None) -> None:
    import numpy as np
    import torch

    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and getattr(device, "type", None) == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


# --- the training state -------------------------------------------------------------------


@dataclass
class Resumed:
    """What the loop needs back besides the model and optimizer (those are loaded in place)."""

    step: int
    data_state: Any  # this rank's data position, None when the world size changed
    rng_restored: bool
    meta: dict[str, Any]


def _options(full: bool, strict: bool = True, **kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=full, cpu_offload=full, strict=strict, **kw)


def _gather(obj: Any, world_size: int) -> list[Any]:
    import torch

    if world_size == 1:
        return [obj]
    out: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(out, obj)
    return out


def save_training_state(
    manager: CheckpointManager,
    *,
    step: int,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    scaler: Any,
    data_state: Any,
    dist: Any,
    meta: Mapping[str, Any] | None = None,
) -> float:
    """Collective (every rank calls it); rank 0 writes. `model` is the plain (possibly
    fully_shard'ed) module, not a DDP or compile wrapper. Returns the seconds it took."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    start = time.perf_counter()
    # full_state_dict gathers FSDP shards (to rank 0's CPU, cpu_offload); for plain and
    # DDP models it is the ordinary state dict, with optimizer state keyed by name.
    model_sd, optim_sd = get_state_dict(model, optimizer, options=_options(True))
    rngs = _gather(capture_rng(dist.device), dist.world_size)
    datas = _gather(data_state, dist.world_size)
    if dist.rank == 0:
        trainer = {
            "step": step,
            "world_size": dist.world_size,
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rngs,
            "data": datas,
            "meta": dict(meta or {}),
        }
        manager.save(step, {"model": model_sd, "optimizer": optim_sd, "trainer": trainer}, meta)
    if dist.world_size > 1:
        import torch

        torch.distributed.barrier()
    return time.perf_counter() - start


def load_training_state(
    ckpt: Checkpoint,
    *,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    scaler: Any,
    dist: Any,
) -> Resumed:
    """Load a checkpoint into the objects in place (every rank calls it)."""
    from torch.distributed.checkpoint.state_dict import set_state_dict

    try:
        model_sd = CheckpointManager.load(ckpt, "model")
        optim_sd = CheckpointManager.load(ckpt, "optimizer")
        trainer = CheckpointManager.load(ckpt, "trainer")
    except Exception as exc:
        raise UsageError(
            f"checkpoint {ckpt.path} cannot be loaded ({type(exc).__name__}: {exc})",
            "remove that folder to resume from the one before it",
        ) from None
    try:
        set_state_dict(
            model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd,
            options=_options(True),
        )  # fmt: skip
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"checkpoint {ckpt.path} does not fit this model ({first[:200]})",
            "resume with the same preset, model and LoRA settings, or use a new --out",
        ) from None
    scheduler.load_state_dict(trainer["scheduler"])
    if scaler is not None and trainer.get("scaler") is not None:
        scaler.load_state_dict(trainer["scaler"])
    same_world = trainer.get("world_size") == dist.world_size
    rng_ok = False
    data_state = None
    if same_world:
        restore_rng(trainer["rng"][dist.rank], dist.device)
        rng_ok = True
        data_state = trainer["data"][dist.rank]
    return Resumed(int(trainer["step"]), data_state, rng_ok, dict(trainer.get("meta") or {}))


def resume_run(
    ckpt: Checkpoint,
    *,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    scaler: Any,
    batches: Any,
    dist: Any,
    say: Any,
) -> int:
    """Continue a run from `ckpt`: training state, learning rate, data position. Returns
    the step to continue from."""
    from torchrig.train.optim import follow_schedule

    resumed = load_training_state(
        ckpt, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, dist=dist
    )
    follow_schedule(optimizer, scheduler)
    if resumed.data_state is not None:
        batches.load_state_dict(resumed.data_state)
    say(f"resumed from {ckpt.path} (step {resumed.step})")
    if not resumed.rng_restored:
        say("the number of processes changed: random streams and data order restart")
    return resumed.step
