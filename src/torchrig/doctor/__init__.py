"""`torchrig doctor`: small checks that name what is wrong and the exact fix.

model    Check (id, status pass/warn/fail/skip, finding, fix, source), Rule, run_checks
host     HOST_CHECKS: driver, build, CUDA vs driver, GPU kernels, MIG, engine, toolkit,
         disk, shm, memlock, ports, workspace, lock — before any pull or build
inside   INSIDE_CHECKS: torch's view inside the workbench (GPU, NCCL, compiler, Triton,
         shm, services); torch is imported lazily
explain  known failure modes (data/failures.toml) matched against pasted error text
"""
