"""torchrig lab: one GPU server shared by many people through JupyterHub (docs/lab.md)."""
