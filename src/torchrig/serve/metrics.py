"""The server's Prometheus metrics (prometheus-client), in a registry of its own.

torchrig_requests_total{endpoint,code}        requests answered
torchrig_request_seconds{endpoint}            latency histogram
torchrig_batch_size                           inputs per model call (/v1/predict)
torchrig_generated_tokens_total               tokens generated
torchrig_generation_tokens_per_second         of the last finished generation
torchrig_queue_depth                          requests waiting for the model
torchrig_gpu_memory_allocated_bytes           torch.cuda.memory_allocated (0 on a CPU)
torchrig_model_ready                          1 once loaded and warmed
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# The *_created series double the output and nobody graphs them.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _gpu_memory() -> float:
    try:
        import torch
    except ImportError:
        return 0.0
    return float(torch.cuda.memory_allocated()) if torch.cuda.is_available() else 0.0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "torchrig_requests", "Requests answered", ["endpoint", "code"], registry=r
        )
        self.latency = Histogram(
            "torchrig_request_seconds", "Request latency", ["endpoint"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "torchrig_batch_size", "Inputs per model call", buckets=BATCH_BUCKETS, registry=r
        )
        self.tokens = Counter("torchrig_generated_tokens", "Tokens generated", registry=r)
        self.tokens_per_s = Gauge(
            "torchrig_generation_tokens_per_second", "Last generation's speed", registry=r
        )
        self.queue = Gauge("torchrig_queue_depth", "Requests waiting for the model", registry=r)
        self.ready = Gauge("torchrig_model_ready", "1 once loaded and warmed", registry=r)
        gpu = Gauge(
            "torchrig_gpu_memory_allocated_bytes", "torch.cuda.memory_allocated", registry=r
        )
        gpu.set_function(_gpu_memory)

    def observe(self, endpoint: str, code: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(code)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> Any:
        return generate_latest(self.registry)
