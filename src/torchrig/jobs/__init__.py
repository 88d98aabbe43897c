"""Training jobs: started detached in the workbench image, followed, stopped, listed.

Host side: `recipes` (names → commands), `state` (the jobs folder: ids, records, states),
`launch` (start, stop, where a job runs). In the image: `runner` (stdlib only), which runs
one job and writes its records; `files` (stdlib only) is the format both sides share.
Nothing here imports anything heavy at import time: the runner starts in a bare interpreter.
"""
