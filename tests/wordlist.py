"""The small vocabulary the tests' tiny corpora are written from (no downloads)."""

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "one",
    "small",
    "cat",
    "sits",
    "on",
    "the",
    "mat",
]
