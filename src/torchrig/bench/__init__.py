"""`torchrig bench`: throughput against the device's datasheet peak, with a report.

Layout:

    model.py      pure: lines, verdicts and their likely causes, FLOP counts, busbw, the
                  reference numbers measured on an H100 (FACTS.md) and the acceptance targets
    measure.py    matmul per precision, device copy, pinned H2D/D2H (CUDA-event timing)
    allreduce.py  NCCL all-reduce bus bandwidth over message sizes, one process per GPU
    workloads.py  GPT-2 124M, ResNet-50, BERT-base training steps, eager and compiled bf16
    report.py     a self-contained HTML report (inline SVG) from the JSON result
    runner.py     runs the chosen groups and assembles the JSON result

torch is imported only inside functions.
"""
