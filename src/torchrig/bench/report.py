"""A self-contained HTML report from a bench result (the JSON dict): inline CSS and SVG,
no scripts, no external assets, so it opens anywhere and can be attached to an issue.
Pure: works from a recorded JSON file on a machine without torch or a GPU.
"""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#1b1f24;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.8em}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border-bottom:1px solid #d8dee4;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#116329;font-weight:600}.low{color:#a40e26;font-weight:600}
.na,.skip{color:#6e7781}.muted{color:#6e7781}.note{background:#fff8c5;padding:.5em .8em}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
pre{background:#f6f8fa;padding:.8em;overflow:auto}
"""


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int | float):
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.{digits}f}"
    return escape(str(x))


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _verdict_cell(line: dict[str, Any]) -> str:
    v = line.get("verdict") or "n/a"
    css = {"ok": "ok", "low": "low", "skip": "skip"}.get(v, "na")
    cause = line.get("cause")
    why = line.get("details", {}).get("skipped") or line.get("details", {}).get("error")
    text = escape(v) + (f": {escape(cause)}" if cause else "") + (f": {escape(why)}" if why else "")
    return f'<td class="{css}">{text}</td>'


def _share(line: dict[str, Any]) -> float | None:
    if line.get("group") == "workload":
        mfu = line.get("details", {}).get("mfu")
        return float(mfu) if mfu is not None else None
    share = line.get("share")
    return float(share) if share is not None else None


def _floor(line: dict[str, Any]) -> float | None:
    if line.get("group") == "workload":
        f = line.get("details", {}).get("mfu_floor")
    else:
        f = line.get("floor")
    return float(f) if f is not None else None


def share_chart(lines: list[dict[str, Any]]) -> str:
    """Horizontal bars: each line's share of its reference (MFU for workloads), with a tick
    at its floor. Lines with no reference are left out."""
    rows = [(ln, s) for ln in lines if (s := _share(ln)) is not None]
    if not rows:
        return '<p class="muted">No line has a reference to compare with.</p>'
    label_w, bar_w, row_h, top = 170, 560, 24, 24
    scale = max(1.0, max(s for _, s in rows) * 1.05)
    height = top + row_h * len(rows) + 24
    width = label_w + bar_w + 90
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="share of reference per line">'
    ]
    for pct in (0.25, 0.5, 0.75, 1.0):
        x = label_w + bar_w * pct / scale
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 20}" '
            f'stroke="#d8dee4"/><text x="{x:.1f}" y="{top - 10}" font-size="11" '
            f'text-anchor="middle" fill="#6e7781">{pct:.0%}</text>'
        )
    for i, (ln, s) in enumerate(rows):
        y = top + i * row_h
        colour = "#2da44e" if ln.get("verdict") == "ok" else "#cf222e"
        if ln.get("verdict") not in ("ok", "low"):
            colour = "#8c959f"
        w = bar_w * s / scale
        name = escape(ln["name"]) + (" (MFU)" if ln.get("group") == "workload" else "")
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 16}" font-size="12" text-anchor="end">{name}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" '
            f'fill="{colour}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 16}" font-size="12">{_pct(s)}</text>'
        )
        floor = _floor(ln)
        if floor is not None:
            fx = label_w + bar_w * floor / scale
            parts.append(
                f'<line x1="{fx:.1f}" y1="{y + 1}" x2="{fx:.1f}" y2="{y + row_h - 1}" '
                f'stroke="#1b1f24" stroke-width="2"><title>floor {_pct(floor)}</title></line>'
            )
    parts.append("</svg>")
    return "".join(parts)


def allreduce_chart(rows: list[dict[str, Any]], reference: float | None) -> str:
    """Bus bandwidth against message size (log scale), with the reference as a dashed line."""
    if not rows:
        return ""
    w, h, left, right, top, bottom = 640, 300, 60, 20, 20, 40
    xs = [math.log2(r["bytes"]) for r in rows]
    ymax = max([r["busbw_gbs"] for r in rows] + [reference or 0]) * 1.1 or 1.0
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (w - left - right)

    def py(y: float) -> float:
        return top + (1 - y / ymax) * (h - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
        'aria-label="all-reduce bus bandwidth by message size">',
        f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" '
        'stroke="#1b1f24"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#1b1f24"/>',
    ]
    for frac in (0.25, 0.5, 0.75, 1.0):
        y = ymax * frac
        parts.append(
            f'<text x="{left - 6}" y="{py(y) + 4:.1f}" font-size="11" text-anchor="end">'
            f"{y:.0f}</text>"
        )
    for r, x in zip(rows, xs, strict=True):
        size = r["bytes"]
        label = f"{size / 2**30:g}G" if size >= 2**30 else f"{size / 2**20:g}M"
        parts.append(
            f'<text x="{px(x):.1f}" y="{h - bottom + 16}" font-size="11" '
            f'text-anchor="middle">{label}</text>'
        )
    points = " ".join(
        f"{px(x):.1f},{py(r['busbw_gbs']):.1f}" for r, x in zip(rows, xs, strict=True)
    )
    parts.append(f'<polyline points="{points}" fill="none" stroke="#0969da" stroke-width="2"/>')
    for r, x in zip(rows, xs, strict=True):
        parts.append(
            f'<circle cx="{px(x):.1f}" cy="{py(r["busbw_gbs"]):.1f}" r="3" fill="#0969da">'
            f"<title>{r['busbw_gbs']} GB/s</title></circle>"
        )
    if reference:
        parts.append(
            f'<line x1="{left}" y1="{py(reference):.1f}" x2="{w - right}" '
            f'y2="{py(reference):.1f}" stroke="#8c959f" stroke-dasharray="5,4"/>'
            f'<text x="{w - right}" y="{py(reference) - 4:.1f}" font-size="11" '
            f'text-anchor="end" fill="#6e7781">reference {reference:.0f} GB/s</text>'
        )
    parts.append(
        f'<text x="{(left + w - right) / 2}" y="{h - 4}" font-size="11" text-anchor="middle">'
        "message size (bytes, log scale)</text>"
        f'<text x="14" y="{(top + h - bottom) / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 14 {(top + h - bottom) / 2})">busbw GB/s</text></svg>'
    )
    return "".join(parts)


def render_html(result: dict[str, Any]) -> str:
    env = result.get("environment", {})
    lines: list[dict[str, Any]] = result.get("lines", [])
    gpu = env.get("gpu_name") or "unknown GPU"
    title = f"torchrig bench — {gpu}"
    counts: dict[str, int] = {}
    for ln in lines:
        counts[ln.get("verdict", "n/a")] = counts.get(ln.get("verdict", "n/a"), 0) + 1
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">{escape(str(env.get("date", "")))}'
        + (" · quick run" if result.get("quick") else "")
        + f" · {result.get('elapsed_s', '?')} s · verdicts: "
        + ", ".join(f"{escape(k)} {v}" for k, v in sorted(counts.items()))
        + "</p>",
    ]
    for note in result.get("notes", []):
        out.append(f'<p class="note">{escape(note)}</p>')

    out.append('<h2>Environment</h2><table id="environment">')
    for key in ("torch", "cuda", "cudnn", "nccl", "driver", "python", "torchrig",
                "transformers", "torchvision"):  # fmt: skip
        if key in env:
            out.append(f"<tr><th>{key}</th><td>{_fmt(env.get(key))}</td></tr>")
    for g in env.get("gpus", []):
        out.append(
            f"<tr><th>GPU {g.get('index')}</th><td>{escape(str(g.get('name')))}, CC "
            f"{escape(str(g.get('cc')))}, {g.get('memory_gib')} GiB, "
            f"{g.get('multiprocessors')} SMs</td></tr>"
        )
    host = result.get("host") or {}
    if host:
        launch = f", {host['launch_us']} µs per kernel launch" if host.get("launch_us") else ""
        out.append(
            f"<tr><th>host</th><td>{escape(str(host.get('cpu') or '?'))}, "
            f"{host.get('cpus') or '?'} CPUs{escape(launch)}</td></tr>"
        )
    rec = result.get("gpu_record")
    if rec:
        peaks = ", ".join(
            f"{k.removesuffix('_tflops')} {rec[k]:g} TFLOP/s"
            for k in ("bf16_tflops", "fp16_tflops", "tf32_tflops", "fp32_tflops")
            if rec.get(k)
        )
        bw = f", {rec['bandwidth_gbs']:g} GB/s" if rec.get("bandwidth_gbs") else ""
        nv = f", NVLink {rec['nvlink_gbs']:g} GB/s" if rec.get("nvlink_gbs") else ""
        out.append(
            f"<tr><th>datasheet</th><td>{escape(rec['name'])}: {escape(peaks)}{bw}{nv} "
            f"(sources {escape(', '.join(rec.get('sources', [])))})</td></tr>"
        )
    out.append("</table>")

    out.append('<h2>Results</h2><table id="results"><tr><th>line</th><th>value</th>'
               "<th>reference</th><th>share</th><th>baseline</th><th>target</th>"
               "<th>verdict</th></tr>")  # fmt: skip
    for ln in lines:
        ref = ln.get("reference")
        ref_text = f"{_fmt(ref)} ({escape(ln.get('reference_label') or '')})" if ref else "—"
        if ln.get("group") == "workload":
            d = ln.get("details", {})
            ref_text = f"MFU {_pct(d.get('mfu'))} (floor {_pct(d.get('mfu_floor'))})"
        target = ln.get("target")
        meets = ln.get("meets_target")
        target_text = (
            "—"
            if target is None
            else f"≥ {_fmt(target)} " + ("✓" if meets else "✗" if meets is False else "")
        )
        share = _share(ln) if ln.get("group") != "workload" else None
        out.append(
            f"<tr><td>{escape(ln['name'])}</td>"
            f'<td class="num">{_fmt(ln.get("value"))} {escape(ln.get("unit", ""))}</td>'
            f'<td>{ref_text}</td><td class="num">{_pct(share)}</td>'
            f'<td class="num">{_fmt(ln.get("baseline"))}</td><td>{target_text}</td>'
            f"{_verdict_cell(ln)}</tr>"
        )
    out.append("</table>")
    if result.get("baseline_source"):
        out.append(f'<p class="muted">Baseline: {escape(result["baseline_source"])}.</p>')

    out.append("<h2>Share of reference</h2>")
    out.append(
        '<p class="muted">Datasheet peak for matmul and copy, the PCIe link for pinned copies, '
        "NVLink per direction for all-reduce, MFU against the bf16 peak for training. The dark "
        "tick is the floor under which a line is low.</p>"
    )
    out.append(f'<div id="share-chart">{share_chart(lines)}</div>')

    ar = result.get("allreduce") or {}
    if ar.get("rows"):
        ref = next((ln.get("reference") for ln in lines if ln.get("group") == "nccl"), None)
        out.append(f"<h2>NCCL all-reduce, {ar.get('world_size')} GPUs</h2>")
        out.append(f'<div id="allreduce-chart">{allreduce_chart(ar["rows"], ref)}</div>')
        out.append("<table><tr><th>bytes</th><th>time µs</th><th>algbw GB/s</th>"
                   "<th>busbw GB/s</th></tr>")  # fmt: skip
        for r in ar["rows"]:
            out.append(
                f'<tr><td class="num">{r["bytes"]:,}</td><td class="num">{r["time_us"]}</td>'
                f'<td class="num">{r["algbw_gbs"]}</td><td class="num">{r["busbw_gbs"]}</td></tr>'
            )
        out.append("</table>")
        if ar.get("topology"):
            out.append(f"<pre>{escape(ar['topology'])}</pre>")
    elif ar.get("skipped") or ar.get("error"):
        out.append(f'<h2>NCCL all-reduce</h2><p class="muted">'
                   f"{escape(ar.get('skipped') or ar.get('error') or '')}</p>")  # fmt: skip

    state = result.get("gpu_state") or {}
    if state:
        out.append("<h2>GPU state after the matmuls (NVML)</h2><table>")
        for k, v in state.items():
            out.append(f"<tr><th>{escape(k)}</th><td>{_fmt(v, 0)}</td></tr>")
        out.append("</table>")
    out.append(
        "<h2>Raw result</h2><details><summary>JSON</summary><pre>"
        + escape(json.dumps(result, indent=1, default=str))
        + "</pre></details>"
    )
    out.append("</body></html>")
    return "\n".join(out)
