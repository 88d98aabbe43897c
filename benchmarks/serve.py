"""Serving speed: a classifier's throughput batched vs unbatched, and an LM's tokens/s with
the KV cache vs without.

    # this CPU (2 cores): tiny-bert classifier, tiny-gpt2 LM with a 128-token context
    python benchmarks/serve.py --cpu
    # a GPU: BERT-base classifier (bert-base preset), GPT-2 124M LM (gpt2-124m preset)
    python benchmarks/serve.py

Models: trained for a few steps by the recipes themselves in --work (throughput does not
depend on what the weights learned; the shapes are the presets'). Classifier: the real
`torchrig serve` (a subprocess on 127.0.0.1, --no-auth) driven by --clients concurrent
httpx connections spread over --client-processes processes (so that the clients' own
Python is not what limits a fast server), each sending one short text per
request until --requests are answered; once with --max-batch 32 (dynamic batching,
--max-wait-ms, the server's default) and once with --max-batch 1, both through CUDA graphs on a GPU
(--compare-graphs adds the batched server without them). Reported: requests/s, p50/p99
latency, the mean batch the server formed (its /metrics, warm-up excluded).
LM: `serve.generate` in this process, greedy, each --prompt-tokens length (default 16 and
512), --new-tokens new tokens, three runs each after one warm-up; tokens/s with the cache
`generate` uses ("with_cache": on a GPU a static cache whose step replays a CUDA graph,
serve/decode_graph.py; on a CPU the DynamicCache), with the DynamicCache on a GPU
("dynamic_cache", eager: generation before the graphs) and without a cache ("without_cache":
every step recomputes the whole sequence). --only lm or --only classifier runs one half.
The result JSON goes to --out (default benchmarks/results/serve[-only]-{cpu2|GPU}-DATE.json).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, machine

from torchrig.freeport import free_port
from torchrig.serve.batcher import DEFAULT_MAX_WAIT_MS

WORDS = [
    "refund",
    "invoice",
    "password",
    "locked",
    "parcel",
    "late",
    "charge",
    "account",
    "courier",
    "please",
    "help",
]


def _quiet(_: str) -> None:
    pass


def train_classifier(work: Path, preset: str) -> Path:
    from torchrig.recipes.text_classify.config import from_preset
    from torchrig.recipes.text_classify.train import train

    rng = random.Random(0)
    data = work / "tickets.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(400):
            writer.writerow([" ".join(rng.choices(WORDS, k=12)), f"intent{i % 4}"])
    out = work / f"classifier-{preset}"
    if (out / "final").is_dir():
        return out  # trained by an earlier run of this script
    cfg = from_preset(preset, data=data, out=out, steps=4, tensorboard=False, compile=False)
    train(cfg, say=_quiet)
    return out


def train_lm(work: Path, preset: str, seq_len: int) -> Path:
    from torchrig.recipes.causal_lm.config import from_preset
    from torchrig.recipes.causal_lm.train import train

    rng = random.Random(0)
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choices(WORDS, k=20)) for _ in range(3000)))
    out = work / f"lm-{preset}"
    if (out / "final").is_dir():
        return out
    cfg = from_preset(
        preset, data=[corpus], out=out, steps=2, seq_len=seq_len, micro_batch=2, grad_accum=1,
        vocab_size=512, warmup=1, log_every=1, ckpt_every=2, tensorboard=False, compile=False,
    )  # fmt: skip
    train(cfg, say=_quiet)
    return out


async def _drive(
    url: str, clients: int, requests: int, seed: int
) -> tuple[list[float], float, float]:
    """`clients` concurrent connections sending `requests` in all: latencies, start, end."""
    import httpx

    latencies: list[float] = []
    left = list(range(seed, seed + requests))
    async with httpx.AsyncClient(
        base_url=url, limits=httpx.Limits(max_connections=clients), timeout=120
    ) as client:

        async def worker() -> None:
            while left:
                i = left.pop()
                text = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(10))
                start = time.perf_counter()
                response = await client.post("/v1/predict", json={"inputs": [text]})
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    raise SystemExit(f"request failed: {response.status_code} {response.text}")

        began = time.time()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, began, time.time()


def _client_process(
    url: str, clients: int, requests: int, seed: int
) -> tuple[list[float], float, float]:
    return asyncio.run(_drive(url, clients, requests, seed))


def _batch_counts(url: str) -> tuple[float, float]:
    import httpx

    values = {
        row.split(" ")[0]: float(row.split(" ")[1])
        for row in httpx.get(url + "/metrics", timeout=30).text.splitlines()
        if row and not row.startswith("#")
    }
    return values["torchrig_batch_size_sum"], values["torchrig_batch_size_count"]


def load_test(url: str, clients: int, requests: int, processes: int) -> dict[str, float]:
    """The load: `clients` connections spread over `processes` client processes, so that
    the clients' own Python is not what limits the rate a fast server reaches."""
    from concurrent.futures import ProcessPoolExecutor

    processes = max(1, min(processes, clients))
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    sum0, count0 = _batch_counts(url)
    with ProcessPoolExecutor(processes) as pool:
        runs = list(
            pool.map(
                _client_process,
                [url] * processes,
                shares,
                [requests * share // clients for share in shares],
                [i * requests for i in range(processes)],
            )
        )
    sum1, count1 = _batch_counts(url)
    latencies = [x for run in runs for x in run[0]]
    wall = max(run[2] for run in runs) - min(run[1] for run in runs)
    q = statistics.quantiles(latencies, n=100)
    return {
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
        "mean_batch": round((sum1 - sum0) / max(1.0, count1 - count0), 2),
    }


def bench_classifier(
    run: Path,
    clients: int,
    requests: int,
    max_batch: int,
    processes: int,
    graphs: bool = True,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
) -> dict[str, Any]:
    import httpx

    port = free_port()
    cmd = [
        sys.executable, "-m", "torchrig.cli.main", "serve", str(run), "--no-auth",
        "--port", str(port), "--max-batch", str(max_batch), "--max-wait-ms", f"{max_wait_ms:g}",
        *([] if graphs else ["--no-cuda-graphs"]),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"serve exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("serve was not ready in 300 s")
            time.sleep(0.2)
        load_test(url, clients, clients * 2, processes)  # warm-up
        result = load_test(url, clients, requests, processes)
    finally:
        proc.terminate()
        _, said = proc.communicate(timeout=60)
    graphs_line = [line for line in said.splitlines() if line.startswith("CUDA graphs")]
    return {
        "max_batch": max_batch, "max_wait_ms": max_wait_ms, "clients": clients,
        "requests": requests,
        "client_processes": processes, "server_said": graphs_line[0] if graphs_line else None,
        **result,
    }  # fmt: skip


# LM decoding variants: (result key, Request.use_cache, Request.cache). "with_cache" is what
# `generate` and `serve` use: a static cache + CUDA graph on a GPU, the DynamicCache on a CPU.
LM_VARIANTS: tuple[tuple[str, bool, Literal["auto", "dynamic"]], ...] = (
    ("with_cache", True, "auto"),
    ("dynamic_cache", True, "dynamic"),
    ("without_cache", False, "auto"),
)


def bench_lm(run: Path, new_tokens: int, prompt_lengths: list[int], device: str) -> dict[str, Any]:
    """Greedy decoding by each of LM_VARIANTS (on a CPU "with_cache" is the dynamic cache, so
    "dynamic_cache" is not run twice), for each prompt length (cut so that prompt + new tokens
    fit the context): the cache matters more the longer the text."""
    from torchrig.serve import decode_graph, generate, kinds, lm
    from torchrig.serve.sampling import Sampling

    model = lm.load(kinds.find(run).path, device)
    said: list[str] = []
    graphed = decode_graph.graphed(model, said.append) if model.device.type == "cuda" else None
    words = list(model.tokenizer(" ".join(WORDS * 200))["input_ids"])
    out: dict[str, Any] = {
        "context": model.context,
        "decoding": said[0] if said else "DynamicCache (CPU)",
        "cache_sizes": graphed.sizes if graphed else None,
        "runs": [],
    }
    for length in prompt_lengths:
        prompt = words[: max(1, min(length, model.context - new_tokens - 1))]
        row: dict[str, Any] = {"prompt_tokens": len(prompt)}
        texts: dict[str, str] = {}
        for key, use_cache, cache in LM_VARIANTS:
            if key == "dynamic_cache" and graphed is None:
                continue  # "with_cache" was the DynamicCache already
            req = generate.Request(
                prompt, new_tokens, Sampling(0.0), use_cache=use_cache, cache=cache
            )
            generate.complete(model, req)  # warm-up
            rates = []
            for _ in range(3):
                if model.device.type == "cuda":
                    import torch

                    torch.cuda.synchronize()
                result = generate.complete(model, req)
                rates.append(result.completion_tokens / result.seconds)
            texts[key] = result.text
            row[key] = {
                "tokens_per_s": round(statistics.median(rates), 1),
                "new_tokens": result.completion_tokens,
            }
        rate = {key: row[key]["tokens_per_s"] for key in texts}
        row["cache_speedup"] = round(rate["with_cache"] / rate["without_cache"], 2)
        if "dynamic_cache" in rate:
            row["graph_speedup"] = round(rate["with_cache"] / rate["dynamic_cache"], 2)
        # Greedy: the same text every way in fp32; in bf16 a near-tie may resolve otherwise
        # where the kernels differ (a static cache attends over its whole masked length).
        row["same_text_as_with_cache"] = {
            key: text == texts["with_cache"] for key, text in texts.items() if key != "with_cache"
        }
        out["runs"].append(row)
        print(f"result lm {json.dumps(row)}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="tiny models on this CPU")
    parser.add_argument("--work", type=Path, default=Path("/tmp/torchrig-bench-serve"))
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=0, help="default 640 CPU, 4096 GPU")
    parser.add_argument("--new-tokens", type=int, default=0, help="default 100 CPU, 256 GPU")
    parser.add_argument(
        "--prompt-tokens", type=int, nargs="+", default=[16, 512], help="LM prompt lengths"
    )
    parser.add_argument(
        "--client-processes",
        type=int,
        default=0,
        help="load generator processes (default: CPUs/2, at most 8)",
    )
    parser.add_argument(
        "--compare-graphs", action="store_true", help="also the batched server without CUDA graphs"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=DEFAULT_MAX_WAIT_MS,
        help="the batched server's wait to fill a batch",
    )
    parser.add_argument(
        "--only", choices=("classifier", "lm"), help="one half of the benchmark (default: both)"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.cpu:
        classifier_preset, lm_preset, seq_len, device = "tiny", "tiny", 128, "cpu"
    else:
        classifier_preset, lm_preset, seq_len, device = "bert-base", "gpt2-124m", 1024, "cuda"
    requests = args.requests or (640 if args.cpu else 4096)
    new_tokens = args.new_tokens or (100 if args.cpu else 256)
    processes = args.client_processes or max(1, min(8, (os.cpu_count() or 2) // 2))
    started = time.perf_counter()
    classifier = train_classifier(args.work, classifier_preset) if args.only != "lm" else None
    language_model = train_lm(args.work, lm_preset, seq_len) if args.only != "classifier" else None
    setup_s = time.perf_counter() - started
    result: dict[str, Any] = {
        "what": "serve: classifier batched vs unbatched; LM tokens/s with and without KV cache",
        "device": device,
        "gpu": _gpu_name(),
    }
    if classifier is not None:
        batched = bench_classifier(
            classifier, args.clients, requests, 32, processes, max_wait_ms=args.max_wait_ms
        )
        print(f"result batched {json.dumps(batched)}", flush=True)
        unbatched = bench_classifier(classifier, args.clients, requests, 1, processes)
        print(f"result unbatched {json.dumps(unbatched)}", flush=True)
        eager = (
            bench_classifier(
                classifier, args.clients, requests, 32, processes, False, args.max_wait_ms
            )
            if args.compare_graphs
            else None
        )
        result["classifier"] = {
            "preset": classifier_preset,
            "batched": batched,
            "unbatched": unbatched,
            "speedup": round(batched["requests_per_s"] / unbatched["requests_per_s"], 2),
            **({"batched_without_cuda_graphs": eager} if eager else {}),
        }
    if language_model is not None:
        result["lm"] = {
            "preset": lm_preset,
            **bench_lm(language_model, new_tokens, args.prompt_tokens, device),
        }
    result["setup_s"] = round(setup_s, 1)
    # This machine is shared: its load says how far the CPU numbers are from idle ones.
    result["load_average_1_5_15m"] = [round(x, 2) for x in os.getloadavg()]
    tag = "cpu2" if args.cpu else (result["gpu"] or "gpu").split()[-1].lower()
    part = f"-{args.only}" if args.only else ""
    out = args.out or RESULTS / f"serve{part}-{tag}-{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), **result}, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written: {out}")


def _gpu_name() -> str | None:
    import torch

    return str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None


if __name__ == "__main__":
    main()
