"""Monitoring: what the GPUs and the running jobs are doing, as Prometheus metrics
(`exporter`), in the terminal (`top`), and as files for Prometheus and Grafana (`targets`).

    gpu         NVML readings (nvidia-ml-py), MIG aware; absent with a reason on CPU
    training    the jobs folder and each job's metrics.jsonl, read as the training core wrote them
    exporter    both as Prometheus metric families (prometheus-client), and the HTTP service
    top         the live terminal view and its --json form
    targets     the Prometheus scrape config and the Grafana dashboard
"""
