"""OUT/report.html: one self-contained page about a run, for a person to look at.

    python -m torchrig.train.report RUN        (re)write RUN/report.html from RUN's files

What it shows, each only when the run has it: the loss and learning-rate curves (validation
loss too), the validation curves (a classifier's accuracy and macro-F1, a causal LM's held-out
loss and perplexity), throughput and MFU over time, the confusion matrix and the most
confident mistakes of a classifier, the run's config, and the environment it ran in.

Self-contained: the curves are inline SVG drawn by matplotlib, the recipe's own pictures
(confusion.png, mistakes.png) are embedded as data: URIs, there is no script and no external
request, so the file can be mailed or opened from an archive. Every step is drawn once: the
history comes from torchrig.train.timeline, which drops what a resume superseded.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torchrig.train.timeline import History, Record, read_history

REPORT = "report.html"
PICTURES = (("confusion.png", "Confusion matrix"), ("mistakes.png", "Most confident mistakes"))
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; }
.plot svg, .plot img { max-width: 100%; height: auto; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
.muted { color: #777; }
"""


def environment() -> dict[str, str]:
    """Where the run ran (the writing process: the run's own at the end of training)."""
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": platform.node(),
    }
    try:
        import torch

        env["torch"] = str(torch.__version__)
        env["cuda"] = str(torch.version.cuda or "none")
        if torch.cuda.is_available():
            env["gpu"] = f"{torch.cuda.device_count()} × {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    from torchrig import __version__

    env["torchrig"] = __version__
    job = os.environ.get("TORCHRIG_JOB_ID")
    if job:
        env["job"] = job
    return env


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    text = buf.getvalue()
    text = text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline SVG
    # ... and the RDF metadata block (a date and namespace URLs, nothing to show).
    start, end = text.find("<metadata>"), text.find("</metadata>")
    return text[:start] + text[end + len("</metadata>") :] if 0 <= start < end else text


def _series(records: Sequence[Record], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for rec in records:
        value = rec.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            xs.append(int(rec["step"]))
            ys.append(float(value))
    return xs, ys


def _figure(
    hist: History, panels: Sequence[tuple[str, Sequence[tuple[Sequence[Record], str, str]]]]
) -> str | None:
    """One SVG with a panel per (y label, [(records, key, legend label)]); None if empty."""
    drawn = [(ylabel, [(r, k, lab) for r, k, lab in lines if _series(r, k)[0]])
             for ylabel, lines in panels]  # fmt: skip
    drawn = [(ylabel, lines) for ylabel, lines in drawn if lines]
    if not drawn:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(drawn), 1, figsize=(9, 2.8 * len(drawn)), sharex=True)
    axes = axes if len(drawn) > 1 else [axes]
    for ax, (ylabel, lines) in zip(axes, drawn, strict=True):
        for records, key, label in lines:
            xs, ys = _series(records, key)
            ax.plot(xs, ys, "o-" if len(xs) < 30 else "-", markersize=3, label=label)
        for resume in hist.resumes:
            ax.axvline(resume["step"], color="grey", linestyle=":", linewidth=1)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    svg = _svg(fig)
    plt.close(fig)
    return svg


def _table(rows: Sequence[Sequence[Any]], head: Sequence[str] = ()) -> str:
    out = ["<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _picture(path: Path, alt: str) -> str | None:
    try:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return None
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render(run: Path, *, title: str = "", env: Mapping[str, str] | None = None) -> str:
    """The report of the run folder `run`, as HTML text."""
    hist = read_history(run / "metrics.jsonl")
    config = _read_json(run / "config.json")
    evaluation = _read_json(run / "eval.json")
    name = title or str(config.get("recipe") or run.name)
    body: list[str] = [f"<h1>{html.escape(name)}</h1>"]

    last = hist.last_train or {}
    summary = [
        ("run folder", str(run)),
        ("steps logged", f"{last.get('step', 0)} of {config.get('steps', '?')}"),
        ("last training loss", last.get("loss")),
        ("resumed", ", ".join(f"at step {r['step']}" for r in hist.resumes) or "no"),
        ("checkpoints", ", ".join(str(c["step"]) for c in hist.checkpoints) or "none"),
    ]
    if hist.last_eval:
        summary += [
            (f"last evaluation: {k}", v)
            for k, v in hist.last_eval.items()
            if k not in ("event", "time", "seconds")
        ]
    body += ["<h2>Summary</h2>", _table(summary)]

    sections: list[tuple[str, str | None]] = [
        ("Loss and learning rate", _figure(hist, [
            ("loss", [(hist.train, "loss", "train loss"), (hist.evals, "val_loss", "val loss")]),
            ("learning rate", [(hist.train, "lr", "learning rate")]),
        ])),
        ("Validation", _figure(hist, [
            ("accuracy / F1", [(hist.evals, "accuracy", "accuracy"),
                               (hist.evals, "macro_f1", "macro-F1")]),
            ("perplexity", [(hist.evals, "perplexity", "val perplexity")]),
        ])),
        ("Throughput and MFU", _figure(hist, [
            ("per second", [(hist.train, "tokens_per_s", "tokens/s"),
                            (hist.train, "samples_per_s", "samples/s")]),
            ("MFU", [(hist.train, "mfu", "MFU")]),
            ("data wait share", [(hist.train, "data_wait", "data wait")]),
        ])),
    ]  # fmt: skip
    for heading, svg in sections:
        if svg is not None:
            body += [f"<h2>{heading}</h2>", f'<div class="plot">{svg}</div>']
    if not hist.train:
        body.append('<p class="muted">No training log lines yet.</p>')

    if evaluation:
        body.append(f"<h2>Evaluation at step {html.escape(str(evaluation.get('step')))}</h2>")
        per_class = evaluation.get("per_class") or {}
        rows = [(label, m.get("precision"), m.get("recall"), m.get("f1"), m.get("support"))
                for label, m in per_class.items()]  # fmt: skip
        body.append(_table(rows, ("class", "precision", "recall", "F1", "support")))
    for file, alt in PICTURES:
        img = _picture(run / file, alt)
        if img is not None:
            body += [f"<h2>{alt}</h2>", f'<div class="plot">{img}</div>']
    mistakes = evaluation.get("mistakes") or []
    if mistakes:
        mrows = [(m.get("id"), m.get("true"), m.get("predicted"), m.get("confidence"))
                for m in mistakes[:20]]  # fmt: skip
        body += ["<h3>Mistakes, most confident first</h3>",
                 _table(mrows, ("sample", "true", "predicted", "confidence"))]  # fmt: skip

    if config:
        text = json.dumps(config, indent=2)
        body += ["<h2>Config</h2>", f"<pre>{html.escape(text)}</pre>"]
    body += ["<h2>Environment</h2>", _table(sorted((env or environment()).items()))]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(name)} – torchrig report</title>\n"
        # No network: a report opened from an archive must not call anywhere.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def write_report(run: Path, *, title: str = "", env: Mapping[str, str] | None = None) -> Path:
    """Write RUN/report.html atomically; returns its path."""
    target = run / REPORT
    tmp = run / f".{REPORT}.{os.getpid()}.tmp"
    tmp.write_text(render(run, title=title, env=env), encoding="utf-8")
    tmp.replace(target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or not (Path(args[0]) / "metrics.jsonl").is_file():
        print(
            "torchrig: give one run folder, one with a metrics.jsonl "
            "(python -m torchrig.train.report RUN)",
            file=sys.stderr,
        )
        return 64
    note = "this report was rewritten after the run: the environment is the rewriter's"
    print(write_report(Path(args[0]), env={**environment(), "note": note}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
