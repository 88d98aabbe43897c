"""Images: base images without a registry (base.py), and building the workbench image."""
