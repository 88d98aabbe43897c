"""The lock: every Python package pinned with hashes, through uv."""
