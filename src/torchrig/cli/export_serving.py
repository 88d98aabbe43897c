"""`torchrig export serving --run RUN [-o DIR]`: a build folder for the slim serving image.

Writes DIR/Dockerfile (serve/image.py renders it from the Plan) and DIR/model/ (a copy of
the run's final model, tokenizer included), then says how to build and run it. Exit 2: no
workbench image built yet, the lock lacks the server's packages, or RUN has no final model.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from torchrig.errors import TorchrigError, UsageError


def model_folder(run: Path) -> Path:
    """The folder to copy into the image: a causal LM's final/, a classifier's final/."""
    from torchrig.serve import kinds

    found = kinds.find(run)
    if found.kind == "causal-lm":
        return found.path
    for folder in (Path(run), Path(run) / "final"):
        if (folder / "classifier.json").is_file() and (folder / "model.safetensors").is_file():
            return folder
    raise UsageError(
        f"{run} has no final classifier (final/model.safetensors)",
        "let the training finish; a serving image carries the final model",
    )


def readable_by_all(folder: Path) -> None:
    """COPY keeps the build context's modes, and the image runs as a user who owns nothing
    (serve/image.py SERVE_UID): training writes its weights 0600 through a temporary file,
    so the server could not open /model/model.safetensors. Read-only for all, as in an image."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def run(args: argparse.Namespace) -> int:
    from torchrig.cli.common import session_from
    from torchrig.fsutil import write_atomically
    from torchrig.launch.local import find_base, local_facts
    from torchrig.launch.session import engine_for
    from torchrig.serve.image import SERVE_PORT, TOKEN_FILE, render_serving_dockerfile

    if args.run is None:
        raise UsageError("export serving needs --run RUN", "name the run folder to serve")
    source = model_folder(args.run)
    session = session_from(args)
    try:
        engine = engine_for(session, None)
    except TorchrigError:
        engine = None
    plan = session.plan(local_facts(session, base=find_base(session, engine)))
    if plan.image.tag is None or engine is None or not engine.image_exists(plan.image.tag):
        raise UsageError(
            "no workbench image has been built yet"
            + (f" for this spec ({plan.image.tag})" if plan.image.tag else ""),
            "run `torchrig build` first",
        )
    text = render_serving_dockerfile(plan)
    if args.stdout:
        print(text, end="")
        return 0
    out = args.output or session.project_dir / "serving"
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".model-", dir=out))
    try:
        shutil.copytree(source, tmp / "model", symlinks=False)
        readable_by_all(tmp / "model")
        shutil.rmtree(out / "model", ignore_errors=True)
        (tmp / "model").rename(out / "model")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_atomically(out / "Dockerfile", text)
    name = f"{plan.image.repository}-serving"
    print(f"wrote {out / 'Dockerfile'} and {out / 'model'}/ (from {source})")
    print(f"build: docker build -t {name} {out}")
    print(
        f"run:   docker run -d -p 127.0.0.1:{SERVE_PORT}:{SERVE_PORT} "
        f"-v $PWD/serve.token:{TOKEN_FILE}:ro {name}"
    )
    return 0
