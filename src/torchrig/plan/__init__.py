"""Plan: what build and up would do, computed without touching anything."""
