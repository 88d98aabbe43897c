"""`torchrig export-model`: a trained classifier as ONNX, an ExportedProgram or TorchScript,
checked against PyTorch before it is kept (source: what a path names; formats: writing and
running each format; run: the export with its check)."""
