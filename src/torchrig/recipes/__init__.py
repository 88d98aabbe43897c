"""Training recipes that run inside the workbench."""
