"""`torchrig serve RUN`: a trained model over HTTP (serve/app.py has the API).

A classifier gets POST /v1/predict (dynamic batching); a causal LM gets OpenAI's
/v1/completions and /v1/chat/completions (streaming included). Listens on 127.0.0.1:8000
by default and wants `Authorization: Bearer TOKEN` on every route but /healthz and
/readyz: the token is read from --token-file (made, 0600, with a fresh token when it does
not exist) or TORCHRIG_SERVE_TOKEN. Exit 0 after a graceful shutdown (SIGTERM, Ctrl-C);
2: bad input (wrong run, missing weights, bad flags); 4: the port cannot be used.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
from pathlib import Path

from torchrig.errors import UsageError
from torchrig.serve.batcher import DEFAULT_MAX_WAIT_MS

TOKEN_ENV = "TORCHRIG_SERVE_TOKEN"
DEFAULT_TOKEN_FILE = Path("~/.config/torchrig/serve.token")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run", type=Path, metavar="RUN",
        help="a classifier or causal-LM run folder, its final/, or an export/ (--format onnx)",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument(
        "--token-file", type=Path, metavar="FILE",
        help=f"the bearer token (default {DEFAULT_TOKEN_FILE}, or ${TOKEN_ENV}); made if absent",
    )  # fmt: skip
    auth.add_argument(
        "--no-auth", action="store_true", help="no token (only on a loopback address)"
    )
    parser.add_argument("--format", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--max-batch", type=int, default=32, help="classifier batch (1: off)")
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=DEFAULT_MAX_WAIT_MS,
        help=f"wait to fill a batch (default {DEFAULT_MAX_WAIT_MS:g})",
    )
    parser.add_argument(
        "--no-cuda-graphs", dest="cuda_graphs", action="store_false",
        help="on a GPU, run a classifier eagerly instead of through CUDA graphs",
    )  # fmt: skip
    parser.add_argument(
        "--max-tokens", type=int, default=512, help="the most new tokens a request may ask for"
    )
    parser.add_argument(
        "--max-body", type=int, default=None, metavar="BYTES",
        help="largest request body (default 1 MiB; 16 MiB for image classifiers)",
    )  # fmt: skip
    parser.add_argument("--max-connections", type=int, default=2048)
    parser.add_argument(
        "--overflow", choices=("refuse", "slide"), default="refuse",
        help="prompts past the trained context: refuse (400) or slide the window",
    )  # fmt: skip
    parser.add_argument("--name", help="the model name in responses (default: the run's)")


def read_or_make_token(path: Path) -> str:
    """The token in `path`; a new random one written there (0600) if it does not exist."""
    path = path.expanduser()
    if path.exists():
        if not path.is_file():
            raise UsageError(f"--token-file {path} is not a file", "give a file")
        token = path.read_text(encoding="utf-8", errors="replace").strip()
        if len(token) < 16:
            raise UsageError(
                f"the token in {path} is shorter than 16 characters",
                "put a long random token there (or delete the file to get one made)",
            )
        return token
    token = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
    except OSError as exc:
        raise UsageError(
            f"--token-file {path} does not exist and cannot be made ({exc.strerror or exc})",
            "put a token there (e.g. mount it read-only), or set $TORCHRIG_SERVE_TOKEN",
        ) from None
    return token


SERVE_FIX = (
    "pip install 'torchrig[serve]' (in the workbench: set enabled = true under "
    "[services.serve] in torchrig.toml and run torchrig up)"
)


def _require_server_packages() -> None:
    for name in ("fastapi", "uvicorn", "prometheus_client"):
        try:
            __import__(name)
        except ImportError:
            raise UsageError(
                f"torchrig serve needs {name}, which is not installed", SERVE_FIX
            ) from None


def run(args: argparse.Namespace) -> int:
    _require_server_packages()
    from torchrig.freeport import is_loopback
    from torchrig.serve import classifier, kinds, lm, server
    from torchrig.serve.app import Settings, State, create_app
    from torchrig.serve.limits import BodyLimit

    for flag, value in (
        ("--max-batch", args.max_batch), ("--max-tokens", args.max_tokens),
        ("--max-connections", args.max_connections),
    ):  # fmt: skip
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, not {value}", f"e.g. {flag} 32")
    if args.no_auth and not is_loopback(args.host):
        raise UsageError(
            f"--no-auth on {args.host} would let anyone who can reach it use the model",
            "keep the token (drop --no-auth), or listen on 127.0.0.1",
        )
    found = kinds.find(args.run)
    server.check_port(args.host, args.port)
    token: str | None = None
    where = "no token (--no-auth)"
    if not args.no_auth:
        if args.token_file is None and os.environ.get(TOKEN_ENV):
            token, where = os.environ[TOKEN_ENV].strip(), f"token from ${TOKEN_ENV}"
        else:
            path = args.token_file or DEFAULT_TOKEN_FILE
            token, where = read_or_make_token(path), f"token in {path.expanduser()}"
    is_image = found.kind == "classifier" and found.recipe == "image-classify"
    max_body = args.max_body or ((16 if is_image else 1) << 20)
    name = args.name or (
        args.run.resolve().name if args.run.name != "final" else args.run.resolve().parent.name
    )

    def load() -> classifier.Classifier | lm.LanguageModel:
        if found.kind == "causal-lm":
            return lm.load(found.path, args.device)
        return classifier.load(found.path, args.format, args.device)

    settings = Settings(
        token=token, max_tokens=args.max_tokens, max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms, overflow=args.overflow, model_name=name,
        cuda_graphs=args.cuda_graphs,
    )  # fmt: skip
    state = State(settings=settings, load=load)
    app = BodyLimit(create_app(state), max_body)
    uv = server.make_server(app, args.host, args.port, args.max_connections)
    state.on_failure = lambda: setattr(uv, "should_exit", True)
    routes = "/v1/completions, /v1/chat/completions" if found.kind == "causal-lm" else "/v1/predict"
    print(
        f"serving {name} ({found.recipe}) on http://{args.host}:{args.port} ({routes}; "
        f"{where}); ready when /readyz says so",
        file=sys.stderr,
        flush=True,
    )
    # uvicorn finishes the requests in flight, then re-raises the signal it caught: with
    # this handler in place a SIGTERM stop ends here and exits 0 (it was asked for).
    signal.signal(signal.SIGTERM, lambda *_: None)
    uv.run()  # type: ignore[attr-defined]
    if state.failed and state.failed_internal:
        print(f"{state.failed} — this is a bug in torchrig; report it", file=sys.stderr)
        return 70
    if state.failed:
        raise UsageError(state.failed)
    return 0
