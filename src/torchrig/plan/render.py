"""The plan as text a person reads top to bottom (plain, so it can be golden-tested)."""

from __future__ import annotations

from torchrig.plan.plan import Plan
from torchrig.units import human_bytes

EMPTY = '""'


def render_plan(plan: Plan) -> str:
    r = plan.resolution
    cuda = f"CUDA {r.cuda}, cuDNN {r.cudnn or '?'}, NCCL {r.nccl or '?'}" if r.cuda else "no CUDA"
    lines = [
        f"torchrig plan for {plan.project}",
        "",
        f"PyTorch   torch {r.torch} ({r.variant}; {cuda})",
        f"          from {r.index or 'find_links / the main index'}",
    ]
    companions = [f"torchvision {r.torchvision}"] if r.torchvision else []
    if r.torchaudio:
        companions.append(f"torchaudio {r.torchaudio}")
    if r.triton:
        companions.append(f"triton {r.triton}")
    if companions:
        lines.append(f"          with {', '.join(companions)}")
    lines += [
        f"Python    {r.python} on {r.base.distribution} ({r.platform})",
        f"Kernels   {' '.join(r.arch_list) or 'CPU only'}",
    ]
    for gpu in r.gpus:
        lines.append(
            f"GPU {gpu.index}     {gpu.name}: sm_{(gpu.cc or '?').replace('.', '')} → {gpu.kernels}"
        )
    lines += ["", "Why"]
    lines += [f"  - {reason}" for reason in r.reasons]
    if r.warnings:
        lines += ["", "Warnings"]
        lines += [f"  ! {w}" for w in r.warnings]
    if r.rejected:
        lines += ["", f"Rejected ({len(r.rejected)})"]
        shown = r.rejected[:8]
        lines += [f"  x {x.reason}" for x in shown]
        if len(r.rejected) > len(shown):
            lines.append(f"  … {len(r.rejected) - len(shown)} more (--json lists all)")
    lock = plan.lock
    lines += ["", f"Lock      {lock.state}"]
    if lock.packages:
        lines.append(
            f"          {lock.packages} packages, {human_bytes(lock.download_bytes)} to download"
        )
        lines += [f"          {p.name} {p.version}: {human_bytes(p.size)}" for p in lock.largest]
    lines += [f"          {p}" for p in lock.problems]
    if plan.sources:
        lines += ["", "Sources"]
        width = max(len(src.key) for src in plan.sources)
        for src in plan.sources:
            value = src.value if isinstance(src.value, str) else " ".join(src.value)
            lines.append(f"  {src.key:<{width}}  {value or EMPTY}  ({src.origin})")
    b, u = plan.build, plan.up
    if b.image is not None:
        lines += ["", f"Build     {b.image} ({b.flavour})"]
    else:
        image = plan.image
        lines += ["", f"Build     {image.repository}:{image.variant}-… ({b.flavour})"]
        lines += [f"          tag not known yet: {why}" for why in image.pending]
    lines += [f"          {i + 1}. {layer}" for i, layer in enumerate(b.layers)]
    lines += [
        "",
        f"Up        {u.container} with {u.engine}",
        f"          ports: {', '.join(f'{k} {v}' for k, v in u.ports.items()) or 'none'}",
        f"          gpus: {u.gpus}; /dev/shm {u.shm}; workspace → {u.workspace}; "
        f"state volume {u.state_volume}",
    ]
    for m in u.mounts:
        mode = "read-only" if m.read_only else "read-write"
        where = m.host_path if m.host_path is not None else f"{m.source} (not checked: --host)"
        lines.append(f"          mount: {where} → {m.target} ({mode})")
    if u.cache is not None and u.cache.volume:
        shared = "every workbench on this host" if u.cache.huggingface == "host" else "this UID"
        lines.append(
            f"          Hugging Face cache: volume {u.cache.volume} → {u.cache.target} "
            f"(shared by {shared})"
        )
    lines += [f"          ! {n}" for n in u.notes]
    return "\n".join(lines) + "\n"
