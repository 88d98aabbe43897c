"""Which samples each process trains on, in which order: a pure function of the position.

Each epoch is a permutation of the n samples drawn from (seed, *stream, epoch); its first
per_rank × world_size entries are dealt round-robin to the ranks (the few left over are
dropped, so every rank takes the same number and the ranks stay in step), and the ranks'
shares are disjoint. A rank's position counts the samples it has taken; a batch may run
across an epoch boundary. Since nothing but the position is state, a checkpoint's position
makes the resumed stream exactly the uninterrupted one.
"""

from __future__ import annotations

from typing import Any

from torchrig.errors import UsageError


def generator(seed: int, *stream: int) -> Any:
    """A numpy generator for one (seed, stream...) tuple: independent streams, no state to
    carry between batches, so any batch can be made again from its index alone."""
    import numpy as np

    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


class EpochOrder:
    def __init__(
        self, n: int, seed: int, rank: int, world_size: int, what: str, stream: tuple[int, ...] = ()
    ) -> None:
        """`what` names the samples for the error when there are fewer than processes,
        e.g. "training image(s)"."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise UsageError(f"rank {rank} is not in a world of {world_size} processes")
        self.n = n
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.stream = stream
        self.per_rank = n // world_size
        if self.per_rank == 0:
            raise UsageError(
                f"{n} {what} for {world_size} processes", "give more data, or run fewer processes"
            )
        self._epoch = -1
        self._order: Any = None

    def epoch_of(self, position: int) -> int:
        return position // self.per_rank

    def _mine(self, epoch: int) -> Any:
        if epoch != self._epoch:
            order = generator(self.seed, *self.stream, epoch).permutation(self.n)
            self._order = order[: self.per_rank * self.world_size][self.rank :: self.world_size]
            self._epoch = epoch
        return self._order

    def indices(self, start: int, count: int) -> Any:
        """Sample indices (0..n-1) at positions start .. start + count - 1 of this rank."""
        import numpy as np

        out: Any = np.empty(count, dtype=np.int64)
        filled = 0
        while filled < count:
            epoch, offset = divmod(start + filled, self.per_rank)
            take = min(count - filled, self.per_rank - offset)
            out[filled : filled + take] = self._mine(epoch)[offset : offset + take]
            filled += take
        return out
