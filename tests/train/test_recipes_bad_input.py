"""The recipes under bad input (issue 12, items 14-20): a refused run leaves --out as it
was, byte for byte; a non-empty --out is refused without --force; failures leave no files;
impossible lengths are refused before any work; text-classify is reproducible; messages
say what happened; Chinese and emoji labels train, tokenize and plot."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from blobs import blob_cfg, blob_task, quiet
from test_image_classify_data import make_tree
from test_text_classify_data import ticket_rows, write_rows

from conftest import make_corpus, make_sft
from torchrig.errors import UsageError
from torchrig.recipes.causal_lm.__main__ import main as causal_main
from torchrig.recipes.classify.loop import run
from torchrig.recipes.image_classify.__main__ import main as image_main
from torchrig.recipes.text_classify.__main__ import main as text_main

FAST = ["--steps", "4", "--log-every", "2", "--ckpt-every", "2", "--no-tensorboard"]


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under folder, by relative path (folders count as entries)."""
    out: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture(scope="module")
def tickets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tickets")
    labels11 = [f"intent-{i:02d}" for i in range(11)]
    rows11 = ticket_rows(220, seed=2)
    for i, row in enumerate(rows11):
        row["label"] = labels11[i % 11]
    return {
        "four": write_rows(folder / "four.csv", ticket_rows(160, seed=1)),
        "eleven": write_rows(folder / "eleven.csv", rows11),
    }


# --- 14: a refused resume changes nothing -----------------------------------------------


def test_a_refused_resume_leaves_every_byte_of_the_run(
    tickets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    base = ["--preset", "tiny", "--out", str(out), "--vocab-size", "120", *FAST]
    assert text_main([*base, "--data", str(tickets["four"]), "--stop-after", "2"]) == 0
    before = tree_digest(out)
    assert any(name.startswith("checkpoints/step-") for name in before)
    capsys.readouterr()
    assert text_main([*base, "--data", str(tickets["eleven"]), "--resume"]) == 2
    line = error_line(capsys)
    assert "11 classes" in line and "4" in line, line
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging left beside
    # The run itself still resumes with its own data.
    assert text_main([*base, "--data", str(tickets["four"]), "--resume"]) == 0
    assert (out / "final" / "classifier.json").is_file()


# --- 15: a non-empty --out without checkpoints ------------------------------------------


def test_a_non_empty_out_without_checkpoints_is_refused_unless_force(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}\n')
    with pytest.raises(UsageError, match="not empty") as refused:
        run(blob_cfg(out, steps=4, ckpt_every=2), blob_task(), say=quiet)
    assert "--force" in refused.value.one_line()
    assert tree_digest(out) == {"config.json": hashlib.sha256(b'{"mine": true}\n').hexdigest()}
    result = run(blob_cfg(out, steps=4, ckpt_every=2, force=True), blob_task(), say=quiet)
    assert result.completed and json.loads((out / "config.json").read_text())["steps"] == 4
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(blob_cfg(empty, steps=4, ckpt_every=2), blob_task(), say=quiet).completed


def test_causal_lm_refuses_a_non_empty_out_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = make_corpus(tmp_path / "corpus.txt", lines=200)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    args = ["--preset", "tiny", "--data", str(corpus), "--out", str(out), *FAST]
    assert causal_main(args) == 2
    assert "--force" in error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert causal_main([*args, "--force"]) == 0
    assert (out / "notes.txt").read_text() == "my notes\n" and (out / "final").is_dir()


# --- 16: failures leave nothing behind --------------------------------------------------


@pytest.mark.parametrize(
    ("case", "args", "wanted"),
    [
        # Found at the first log line (step 2), before the first checkpoint (step 6).
        ("nan", ["--lr", "1e6", "--grad-clip", "0", "--ckpt-every", "6"], "loss"),
        ("max-length", ["--max-length", "1000"], "--max-length 1000"),
        ("empty-text", ["@empty"], "no usable rows"),
        ("unknown-model", ["--model", "bert-huge"], "unknown model 'bert-huge'"),
        ("missing-model-path", ["--model-path", "@missing"], "does not exist"),
        ("vocab-size", ["--vocab-size", "10"], "--vocab-size 10"),
    ],
)
def test_a_failed_text_classify_run_leaves_no_file(
    case: str,
    args: list[str],
    wanted: str,
    tickets: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text('text,label\n" ",a\n"",b\n')
    data = empty if "@empty" in args else tickets["four"]
    args = [a.replace("@missing", str(tmp_path / "no-model")) for a in args if a != "@empty"]
    out = tmp_path / "runs" / "run"
    base = ["--preset", "tiny", "--data", str(data), "--out", str(out), *FAST, "--steps", "6"]
    assert text_main([*base, "--vocab-size", "120", *args]) == 2
    assert wanted in error_line(capsys)
    assert not out.exists()
    assert not (tmp_path / "runs").exists()  # not even the folder above it


def test_an_unknown_image_model_is_refused_before_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = make_tree(tmp_path / "images", per_class=12)
    out = tmp_path / "run"
    began = time.perf_counter()
    argv = ["--preset", "tiny", "--data", str(images), "--out", str(out), "--model", "foonet"]
    assert image_main([*argv, *FAST]) == 2
    line = error_line(capsys)
    assert "'foonet'" in line and "needs torchvision" not in line, line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["images"]
    assert time.perf_counter() - began < 30


# --- 17: lengths against the model's context and memory ---------------------------------


def _limited() -> None:
    # A bound for the code before the fix, which tried to run the step: 6 GiB of address
    # space, so it fails instead of swapping the machine.
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


def _causal_subprocess(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, "-m", "torchrig.recipes.causal_lm", *args],
        capture_output=True, text=True, timeout=timeout, env=env, preexec_fn=_limited,
    )  # fmt: skip


def test_a_sequence_longer_than_the_context_is_refused_at_once(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus.txt", lines=200)
    out = tmp_path / "run"
    began = time.perf_counter()
    try:
        done = _causal_subprocess(
            ["--preset", "tiny", "--data", str(corpus), "--out", str(out), "--seq-len", "100000"],
            timeout=90,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("--seq-len 100000 was not refused within 90 s")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--seq-len 100000" in done.stderr and "128" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
    assert time.perf_counter() - began < 60


def test_a_step_that_cannot_fit_in_memory_is_refused_with_the_estimate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = make_corpus(tmp_path / "corpus.txt", lines=200)
    out = tmp_path / "run"
    args = ["--preset", "tiny", "--model", "gpt2-124m", "--seq-len", "1024"]
    args += ["--micro-batch", "100000", "--data", str(corpus), "--out", str(out), "--device", "cpu"]
    assert causal_main(args) == 2
    line = error_line(capsys)
    assert "GiB" in line and "--micro-batch 100000" in line and "free" in line, line
    assert not out.exists()


# --- 18: text-classify is reproducible --------------------------------------------------


def test_text_classify_twice_gives_the_same_tokenizer_and_result(
    tickets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        argv = ["--preset", "tiny", "--data", str(tickets["four"]), "--out", str(out)]
        assert text_main([*argv, "--vocab-size", "150", *FAST, "--steps", "6"]) == 0
        runs.append(out)
    capsys.readouterr()
    a, b = runs
    for name in ("tokenizer.json", "tokenizer_config.json", "torchrig-tokenizer.json"):
        assert (a / "tokenizer" / name).read_bytes() == (b / "tokenizer" / name).read_bytes()
    assert (a / "data" / "train.npz").read_bytes() == (b / "data" / "train.npz").read_bytes()
    eval_a = json.loads((a / "eval.json").read_text())
    eval_b = json.loads((b / "eval.json").read_text())
    assert eval_a == eval_b

    def losses(run_dir: Path) -> list[Any]:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [json.loads(x)["loss"] for x in lines if '"loss"' in x]

    assert losses(a) == losses(b) and len(losses(a)) == 3


# --- 19: messages that say what happened ------------------------------------------------


def test_causal_lm_data_folder_is_named_as_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "texts"
    folder.mkdir()
    make_corpus(folder / "a.txt", lines=50)
    assert (
        causal_main(["--preset", "tiny", "--data", str(folder), "--out", str(tmp_path / "r")]) == 2
    )
    line = error_line(capsys)
    assert "is a folder" in line and "does not exist" not in line and "*.txt" in line, line


def test_causal_lm_resume_says_the_tokenizer_was_reused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = make_corpus(tmp_path / "corpus.txt", lines=200)
    args = ["--preset", "tiny", "--data", str(corpus), "--out", str(tmp_path / "run"), *FAST]
    assert causal_main([*args, "--stop-after", "2"]) == 0
    assert "trained on the data" in capsys.readouterr().out
    assert causal_main([*args, "--resume"]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if "tokenizer:" in line]
    assert len(said) == 1 and "reused" in said[0] and "trained on the data" not in said[0], said


def test_sft_reports_how_many_records_were_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = make_sft(tmp_path / "pairs.jsonl", records=40)
    args = ["--preset", "tiny", "--sft", str(pairs), "--out", str(tmp_path / "run"), *FAST]
    assert causal_main([*args, "--seq-len", "12", "--vocab-size", "300"]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if "were cut" in line]
    assert len(said) == 1 and " of 40 records" in said[0] and "--seq-len 12" in said[0], said


def test_an_unterminated_csv_quote_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "t.csv"
    data.write_text('text,label\nmy order is late,a\n"refund please,b\nhello,a\nbye,b\n')
    argv = ["--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "run"), *FAST]
    assert text_main(argv) == 2
    line = error_line(capsys)
    assert "row 3 (line 3)" in line and "never closed" in line and "too few" not in line, line


# --- 20: Chinese and emoji labels --------------------------------------------------------

INTENTS_ZH = {
    "退款": ["我要退款", "请给我退款", "退款什么时候到账", "申请退款{x}"],
    "订单查询": ["我的订单在哪里", "查询订单状态", "订单还没到", "帮我查{x}订单"],
    "密码重置 🔑": ["忘记密码了", "重置密码", "密码不对登录不了", "怎么改{x}密码"],
    "投诉 😠": ["我要投诉", "服务太差了", "投诉客服态度", "对{x}很不满意"],
}
ITEMS_ZH = ["手机", "耳机", "电脑", "衣服", "鞋子"]


def chinese_intents(path: Path, n: int = 240) -> Path:
    import random

    rng = random.Random(7)
    labels = sorted(INTENTS_ZH)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        text = rng.choice(INTENTS_ZH[label]).format(x=rng.choice(ITEMS_ZH))
        rows.append({"id": f"Z{i}", "text": text, "label": label})
    return write_rows(path, rows)


def test_a_chinese_intent_data_set_trains_tokenizes_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rich.cells import cell_len

    from torchrig.recipes.text_classify.tokenizer import load_tokenizer

    data = chinese_intents(tmp_path / "zh.csv")
    out = tmp_path / "run"
    argv = ["--preset", "tiny", "--data", str(data), "--out", str(out), "--vocab-size", "120"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert text_main([*argv, *FAST, "--steps", "20", "--log-every", "10"]) == 0
    missing = [str(w.message) for w in caught if "missing from" in str(w.message)]
    assert missing == []
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    # CJK characters are words of their own (BERT's pre-tokenizer), never [UNK] runs.
    tokenizer = load_tokenizer(out / "tokenizer")
    assert tokenizer.tokenize("我的订单在哪里") == list("我的订单在哪里")
    # The per-class table lines up in terminal cells: "precision" of every row starts in
    # the same column.
    table = [
        line for line in capsys.readouterr().out.splitlines()
        if line.startswith(("class ", *sorted(INTENTS_ZH)))
    ]  # fmt: skip
    assert len(table) == 5, table
    first_number = [
        line.index("  0.") if "  0." in line else line.index("  1.") for line in table[1:]
    ]
    columns = {cell_len(line[:i]) for line, i in zip(table[1:], first_number, strict=True)}
    assert columns == {cell_len(table[0][: table[0].index("  precision")])}, table
    meta = json.loads((out / "classifier.json").read_text(encoding="utf-8"))
    assert meta["labels"] == sorted(INTENTS_ZH)


def test_the_confusion_plot_has_every_glyph_of_cjk_and_emoji_labels(tmp_path: Path) -> None:
    from torchrig.recipes.classify import evaluate as E

    labels = ["退款", "订单查询", "密码重置 🔑", "その他", "환불"]
    matrix = [[2 if i == j else 0 for j in range(5)] for i in range(5)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        E.plot_confusion(E.report(matrix, labels), tmp_path / "c.png")
    assert [str(w.message) for w in caught if "missing from" in str(w.message)] == []
    assert (tmp_path / "c.png").stat().st_size > 1000
