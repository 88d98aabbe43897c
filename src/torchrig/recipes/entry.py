"""What every recipe's `python -m torchrig.recipes.NAME` does: flags → config → train.

Exit codes: 0 trained, or stopped cleanly by SIGTERM/SIGINT with a checkpoint; 2 bad input
(one line on stderr: what is wrong and the fix); 1 another torchrig error. The training
module is imported only after the flags parse, so `--help` and bad flags stay fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from torchrig.errors import TorchrigError


def run_recipe(make_config: Callable[[], Any], load_train: Callable[[], Callable[..., Any]]) -> int:
    from torchrig.train.signals import StopFlag

    try:
        cfg = make_config()
        train = load_train()
        with StopFlag() as stop:
            train(cfg, stop=stop)
    except TorchrigError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    return 0
