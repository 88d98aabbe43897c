"""`torchrig verify`: is every visible GPU computing correctly? Failing loudly, never on CPU.

Layout:

    result.py   pure: the tolerances, the check record and report, the formatting (no torch)
    env.py      why CUDA is unavailable (one line), the versions, the GPU's clocks through NVML
    checks.py   the checks themselves (torch imported inside): matmul per precision, AMP,
                torch.compile, SDPA backends, DataLoader through /dev/shm, pinned round trip
    nccl.py     one process per GPU (spawn), a localhost TCP store: the all-reduce check and
                the harness `torchrig bench` uses for its bus-bandwidth sweep
    runner.py   runs the checks on every visible GPU and collects the report

torch is imported only inside functions, so the host CLI (no torch) can import this package.
"""
