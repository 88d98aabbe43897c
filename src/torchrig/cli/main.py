"""The `torchrig` command: parse, dispatch to one verb module, and map errors to exit codes.

This is the only error boundary. Known errors (torchrig.errors) print one line on stderr and
exit with their documented code; anything else is a bug and says so. Tracebacks are shown
only with --debug.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from torchrig import __version__
from torchrig.command import set_debug
from torchrig.errors import DISK_ERRNOS, EXIT_CODES, TorchrigError, disk_error

# One module per verb, imported only when that verb runs so `torchrig plan` stays fast.
VERBS: dict[str, str] = {
    "init": "Write a commented torchrig.toml chosen from this machine's facts.",
    "schema": "Print the JSON schema of torchrig.toml.",
    "host": "Report this machine: driver, GPUs, container engines, shm, disk.",
    "plan": "Show what torchrig would build and run, and why; changes nothing.",
    "lock": "Pin every Python package with hashes into torchrig.lock.",
    "build": "Build the workbench image (tagged by content: unchanged inputs never rebuild).",
    "up": "Start the workbench (lock and build if needed) and print how to reach it.",
    "down": "Stop and remove the workbench; keep its state unless --purge.",
    "status": "Is the workbench up and healthy, and on which ports.",
    "logs": "Show the workbench's output, or a job's (torchrig logs JOB -f).",
    "shell": "Open a shell in the workbench as the workbench user.",
    "exec": "Run a command in the workbench as the workbench user.",
    "run": "Start a training job (a recipe, or -- CMD), detached; torchrun for --gpus N > 1.",
    "jobs": "List the jobs and their state (running, exited N, killed, lost).",
    "stop": "Stop a job: SIGTERM for a final checkpoint, SIGKILL after the stop timeout.",
    "top": "Live view of the GPUs (who holds them) and the jobs (throughput, MFU, loss, ETA).",
    "push": "Push the built image to a registry; its digest goes into torchrig.images.",
    "export": "Write the run plan as compose.yaml, a devcontainer.json or Kubernetes jobs.",
    "verify": "Check that every visible GPU computes correctly (never falls back to CPU).",
    "bench": "Measure throughput against the GPU's datasheet peak; JSON and an HTML report.",
    "doctor": "Check this machine (or, with --inside, the workbench) and name each fix.",
    "export-model": "Export a trained classifier (ONNX, ExportedProgram, TorchScript), checked.",
    "predict": "Classify texts or images with a trained classifier: JSONL out.",
    "generate": "Generate text with a trained causal LM (KV cache, sampling, stop strings).",
    "serve": "Serve a trained model over HTTP (OpenAI-compatible for LMs; batched predict).",
    "prepare": "As root, once per machine: fill the shared cache (bases, wheels) for every user.",
    "lab": "A GPU server for many people: JupyterHub, one image, per-user GPUs, keys and limits.",
}


DEBUG_HELP = "show tracebacks and print each command torchrig runs (engine, uv, debootstrap)"


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors go through the boundary."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgError(f"{self.prog}: {message}")


class _ArgError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="torchrig",
        description="A reproducible, secure PyTorch + CUDA workbench in one command.",
        epilog="Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()),
    )
    parser.add_argument("--version", action="version", version=f"torchrig {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for verb, help_text in VERBS.items():
        verb_parser = sub.add_parser(verb, help=help_text, description=help_text)
        verb_parser.set_defaults(_module=verb.replace("-", "_"))
        # After the verb too (`torchrig plan --debug`). SUPPRESS: a verb's default must not
        # overwrite the --debug given before the verb (argparse copies sub-defaults over).
        verb_parser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP
        )
        module = importlib.import_module(f"torchrig.cli.{verb.replace('-', '_')}")
        module.add_arguments(verb_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # Until the line is parsed, a guess (words after `--` belong to a command, not to us).
    before_command = args_list[: args_list.index("--")] if "--" in args_list else args_list
    debug = "--debug" in before_command
    set_debug(False)
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        debug = bool(args.debug)
        set_debug(debug)
        if not getattr(args, "_module", None):
            parser.print_help()
            return 2
        module = importlib.import_module(f"torchrig.cli.{args._module}")
        return int(module.run(args))
    except _ArgError as exc:
        print(f"error: {exc} (see --help)", file=sys.stderr)
        return 2
    except TorchrigError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            return _internal_error(exc, debug)
        # A disk failure is the machine's, not a bug: exit 4 with the path, no traceback.
        if debug:
            traceback.print_exc()
        error = disk_error(exc, exc.filename or "a file")
        print(f"error: {error.one_line()}", file=sys.stderr)
        return error.exit_code
    except Exception as exc:
        return _internal_error(exc, debug)
    finally:
        set_debug(False)  # a caller that runs main() again (tests) starts from off


def _internal_error(exc: Exception, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(
        f"internal error: {type(exc).__name__}: {exc} — this is a bug in torchrig; "
        "rerun with --debug and report the traceback",
        file=sys.stderr,
    )
    return 70


if __name__ == "__main__":
    sys.exit(main())
