"""torchrig: a reproducible, secure PyTorch + CUDA workbench on a GPU machine in one command."""

__version__ = "0.1.0"
