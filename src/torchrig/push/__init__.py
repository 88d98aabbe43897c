"""Pushing the built image to a registry and the record of its digest (torchrig.images)."""
