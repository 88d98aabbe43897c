"""The one size formatter (issue 13, item 7): decimal for downloads, binary for memory and
disks; one decimal at most, none for a whole number."""

from __future__ import annotations

import pytest

from torchrig.units import human_bytes


@pytest.mark.parametrize(
    ("n", "binary", "shown"),
    [
        (None, False, "?"),
        (0, False, "0 B"),
        (999, False, "999 B"),
        (2_600_000_000, False, "2.6 GB"),
        (442_400_000_000, False, "442.4 GB"),
        (1_500_000_000_000, False, "1.5 TB"),
        (512, True, "512 B"),
        (64 << 20, True, "64 MiB"),
        (10 << 20, True, "10 MiB"),
        (int(0.9 * (1 << 30)), True, "921.6 MiB"),
        (81559 << 20, True, "79.6 GiB"),
        (1 << 30, True, "1 GiB"),  # the allreduce line's name in bench targets
        (int(125.8 * (1 << 30)), True, "125.8 GiB"),
        (2 << 40, True, "2 TiB"),
        (4096 << 40, True, "4096 TiB"),
    ],
)
def test_sizes_for_people(n: int | None, binary: bool, shown: str) -> None:
    assert human_bytes(n, binary=binary) == shown


def test_a_size_that_rounds_to_a_whole_number_prints_none() -> None:
    assert human_bytes(int(9.97 * (1 << 30)), binary=True) == "10 GiB"
