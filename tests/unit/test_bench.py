"""bench's pure parts: formulas, verdicts and causes, reference numbers, the HTML report.

No GPU or torch needed. The report is rendered from the recorded H100 result committed under
benchmarks/results/ (when present) and from a synthetic result of an unknown GPU.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from torchrig.bench import model as m
from torchrig.bench.report import render_html
from torchrig.cli.main import main
from torchrig.compat.model import load_compat
from torchrig.train.metrics import mfu, transformer_flops_per_token

ROOT = Path(__file__).resolve().parents[2]
RECORDED = sorted((ROOT / "benchmarks" / "results").glob("h100-bench-*.json"))

GPT2_N = 123_653_376  # GPT-2 124M (vocab 50,257) less its 786,432 position embeddings
BERT_N = 85_646_594  # BERT-base classification less its embeddings (transformers' config)


# --- formulas -------------------------------------------------------------------------------


@pytest.mark.parametrize(("world", "factor"), [(1, 0.0), (2, 1.0), (4, 1.5), (8, 1.75)])
def test_busbw_is_nccl_tests_definition(world: int, factor: float) -> None:
    assert m.busbw(100.0, world) == pytest.approx(100.0 * factor)


def test_gpt2_flops_per_token_is_6n_plus_attention() -> None:
    flops = transformer_flops_per_token(GPT2_N, n_layer=12, d_model=768, seq_len=1024)
    assert flops == 6 * GPT2_N + 12 * 12 * 768 * 1024 == 855_166_464


def test_gpt2_mfu_of_the_h100_baseline_is_about_39_percent() -> None:
    flops = transformer_flops_per_token(GPT2_N, 12, 768, 1024)
    assert mfu(flops, 453_800, 989.0) == pytest.approx(0.392, abs=0.002)
    assert mfu(flops, 453_800, None) is None


def test_resnet50_training_flops_per_image() -> None:
    assert m.resnet50_flops_per_image() == pytest.approx(24.534e9)


def test_workload_floors_are_80_percent_of_the_h100_baselines() -> None:
    base = m.BASELINES["H100 SXM"]
    per_item = {
        "gpt2": transformer_flops_per_token(GPT2_N, 12, 768, 1024),
        "resnet50": m.resnet50_flops_per_image(),
        "bert": 128 * transformer_flops_per_token(BERT_N, 12, 768, 128),
    }
    for name, floor in m.WORKLOAD_MFU_FLOOR.items():
        achieved = mfu(per_item[name.split()[0]], base[name], 989.0)
        assert achieved is not None
        assert floor == pytest.approx(0.8 * achieved, rel=0.03), name


def test_pcie_link_rate() -> None:
    state = {"pcie_gen": 5, "pcie_width": 16, "pcie_gen_gpu_max": 5, "pcie_width_max": 16}
    ref, label, cause = m.pcie_reference(state)
    assert ref == pytest.approx(63.0, abs=0.1)
    assert label == "PCIe Gen5 x16"
    assert cause and "best generation" in cause
    ref, label, cause = m.pcie_reference({**state, "pcie_gen": 4})
    assert label == "PCIe Gen5 x16"
    assert cause == "PCIe link runs at Gen4 x16, the GPU supports Gen5 x16"
    assert m.pcie_reference({}) == (None, "", None)


def test_cpu_steal_share_from_proc_stat() -> None:
    before = m.cpu_times("cpu  100 0 50 1000 10 0 5 0 0 0\ncpu0 1 2 3 4\n")
    after = m.cpu_times("cpu  200 0 100 1100 10 0 5 50 0 0\n")
    assert before == (155, 0, 1165)
    assert m.steal_share(before, after) == pytest.approx(50 / 300)
    assert m.steal_share(before, before) is None
    assert m.cpu_times("") == (0, 0, 0)


# --- verdicts and causes --------------------------------------------------------------------


def test_judge_ok_low_na_skip() -> None:
    ok = m.judge(m.Line("matmul bf16", "matmul", 780.0, "TFLOP/s"), 989.0, 0.7, "why")
    assert (ok.verdict, ok.cause, ok.share) == ("ok", None, pytest.approx(0.7887, abs=1e-4))
    low = m.judge(m.Line("matmul bf16", "matmul", 500.0, "TFLOP/s"), 989.0, 0.7, "power")
    assert (low.verdict, low.cause) == ("low", "power")
    na = m.judge(m.Line("matmul bf16", "matmul", 500.0, "TFLOP/s"), None, 0.7, "power")
    assert (na.verdict, na.share) == ("n/a", None)
    skip = m.judge(m.Line("allreduce 1 GiB", "nccl", None, "GB/s"), 450.0, 0.7, "x")
    assert skip.verdict == "skip"


def test_judge_mfu() -> None:
    line = m.judge_mfu(m.Line("gpt2 compiled", "workload", 1.0, "tokens/s"), 0.35)
    assert line.verdict == "ok"
    assert line.details["mfu_floor"] == m.WORKLOAD_MFU_FLOOR["gpt2 compiled"]
    assert m.judge_mfu(m.Line("gpt2 compiled", "workload", 1.0, "t"), 0.2).verdict == "low"
    assert m.judge_mfu(m.Line("gpt2 compiled", "workload", 1.0, "t"), None).verdict == "n/a"


def test_clock_cause_reads_throttle_reasons_then_clocks() -> None:
    throttled = {"throttle_reasons": ["sw_power_cap"], "power_w": 699.0, "power_limit_w": 700.0}
    assert "sw_power_cap, 699 of 700 W" in m.clock_cause(throttled)
    slow = {"throttle_reasons": ["gpu_idle"], "sm_clock_mhz": 1200, "sm_clock_max_mhz": 1980}
    assert m.clock_cause(slow).startswith("SM clock 1200 of 1980 MHz")
    assert "another process" in m.clock_cause({})


def test_tf32_at_fp32_speed_is_named() -> None:
    assert m.tf32_cause(60.0, 67.0) and "TF32 not in effect" in m.tf32_cause(60.0, 67.0)  # type: ignore[operator]
    assert m.tf32_cause(390.0, 67.0) is None


def test_workload_cause() -> None:
    assert "GPU itself" in m.workload_cause(True, True, 0.5)
    assert "12% steal" in m.workload_cause(True, False, 0.12)
    assert "host-bound" in m.workload_cause(False, False, 0.0)
    assert "graph breaks" in m.workload_cause(True, False, None)


def test_h100_reference_numbers_and_targets() -> None:
    rec = load_compat().gpu_for("NVIDIA H100 80GB HBM3")
    assert rec is not None and rec.name in m.BASELINES and rec.name in m.TARGETS
    line = m.attach_reference_numbers(m.Line("matmul bf16", "matmul", 780.0, "TFLOP/s"), rec.name)
    assert line.baseline == 774.5
    assert line.target == pytest.approx(741.8, abs=0.1)
    assert line.meets_target is True
    h200 = load_compat().gpu_for("NVIDIA H200")
    assert h200 is not None and "allreduce 1 GiB" in m.TARGETS[h200.name]
    unknown = m.attach_reference_numbers(m.Line("memcopy", "memory", 1.0, "GB/s"), None)
    assert unknown.baseline is None and unknown.target is None


def test_no_peak_sentence_is_one_sentence() -> None:
    s = m.no_peak_sentence("Mystery GPU 9000")
    assert s.count(". ") == 0 and s.endswith(".") and "Mystery GPU 9000" in s


# --- HTML report ----------------------------------------------------------------------------


class _Structure(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.ids: dict[str, str] = {}
        self.attrs_seen: list[tuple[str, str | None]] = []
        self.rows_in: dict[str, int] = {}
        self._table: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs_seen += attrs
        d = dict(attrs)
        if d.get("id"):
            self.ids[d["id"] or ""] = tag
        if tag == "table":
            self._table = d.get("id")
        if tag == "tr" and self._table:
            self.rows_in[self._table] = self.rows_in.get(self._table, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None


def _unknown_gpu_result() -> dict[str, Any]:
    lines = [
        m.judge(m.Line("matmul bf16", "matmul", 120.5, "TFLOP/s"), None, 0.7, None),
        m.judge(m.Line("memcopy", "memory", 800.0, "GB/s"), None, 0.8, None),
        m.judge(m.Line("h2d pinned", "pcie", 20.0, "GB/s"), 31.5, 0.7, "PCIe link runs at Gen3"),
        m.judge(m.Line("allreduce 1 GiB", "nccl", 40.0, "GB/s busbw"), None, 0.7, None),
        m.judge_mfu(m.Line("gpt2 <compiled>", "workload", 50_000.0, "tokens/s"), None),
    ]
    return {
        "kind": "torchrig.bench",
        "quick": True,
        "environment": {
            "date": "2026-11-24T00:00:00+00:00",
            "torch": "2.11.0+cu130",
            "cuda": "13.0",
            "driver": "580.159.04",
            "gpu_name": "Mystery GPU 9000",
            "gpus": [{"index": 0, "name": "Mystery GPU 9000", "cc": "9.9", "memory_gib": 1.0}],
        },
        "gpu_record": None,
        "lines": [ln.to_dict() for ln in lines],
        "allreduce": {
            "world_size": 2,
            "rows": [
                {"bytes": 2**20, "time_us": 30.0, "algbw_gbs": 35.0, "busbw_gbs": 35.0},
                {"bytes": 2**30, "time_us": 2.7e4, "algbw_gbs": 40.0, "busbw_gbs": 40.0},
            ],
        },
        "gpu_state": {"sm_clock_mhz": 1000},
        "notes": [m.no_peak_sentence("Mystery GPU 9000")],
        "elapsed_s": 12.0,
    }


def _check_self_contained(html: str, result: dict[str, Any]) -> _Structure:
    parsed = _Structure()
    parsed.feed(html)
    assert html.startswith("<!DOCTYPE html>")
    assert parsed.tags[0] == "html"
    for tag in ("script", "link", "img", "iframe"):
        assert tag not in parsed.tags, f"<{tag}> in a self-contained report"
    refs = [v for k, v in parsed.attrs_seen if k in ("src", "href") and v]
    assert refs == [], refs
    assert parsed.ids.get("results") == "table"
    assert parsed.ids.get("environment") == "table"
    assert parsed.rows_in["results"] == len(result["lines"]) + 1  # a header row
    return parsed


@pytest.mark.skipif(not RECORDED, reason="no recorded H100 bench result in benchmarks/results/")
def test_report_from_the_recorded_h100_result() -> None:
    result = json.loads(RECORDED[-1].read_text())
    html = render_html(result)
    parsed = _check_self_contained(html, result)
    assert parsed.ids.get("share-chart") == "div"
    assert parsed.tags.count("svg") >= 1
    for line in result["lines"]:
        assert line["name"] in html
    assert "H100" in html
    assert "Baseline:" in html  # FACTS.md's same-method numbers shown beside ours


def test_report_for_an_unknown_gpu_says_no_peak_and_escapes() -> None:
    result = _unknown_gpu_result()
    html = render_html(result)
    parsed = _check_self_contained(html, result)
    assert "No datasheet peak is known for" in html
    assert "gpt2 &lt;compiled&gt;" in html and "gpt2 <compiled>" not in html
    assert parsed.ids.get("allreduce-chart") == "div"
    assert parsed.tags.count("polyline") == 1
    assert parsed.tags.count("svg") == 2  # share chart (the h2d line) and all-reduce


def test_cli_renders_a_recorded_result_without_a_gpu(tmp_path: Path) -> None:
    src = tmp_path / "bench.json"
    src.write_text(json.dumps(_unknown_gpu_result()))
    out = tmp_path / "report" / "bench.html"
    assert main(["bench", "--from", str(src), "--html", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["bench", "--from", str(src)]) == 2  # --from needs --html
