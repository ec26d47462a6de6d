"""A train stream that any batch of can be made directly: epochs reshuffled from (seed, epoch).

Epoch ``e`` orders the ``n`` examples by ``np.random.default_rng([seed, e]).permutation(n)``
(in index order when not shuffled) and is cut into ``n // batch_size`` batches, its ragged
tail dropped, so batch ``b`` holds

    order(e)[i B : (i + 1) B],   e, i = divmod(b, n // B)

and is known without making batches ``0 .. b-1``. A resumed trial ``seek``s to its next batch
at no cost (``algoperf.runner.resume.CountingIterator.skip`` calls ``seek``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


class EpochOrder:
    """Which examples make batch ``b`` (module docstring)."""

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool = True, what: str = "the training set"):
        if batch_size > n:
            raise ValueError(f"batch size {batch_size} is larger than {what} ({n} examples)")
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.per_epoch = n // batch_size
        self._epoch, self._order = -1, np.empty(0, np.int64)

    def epoch_of(self, b: int) -> int:
        return b // self.per_epoch

    def batch(self, b: int) -> np.ndarray:
        """The example indices of batch ``b``, in stream order."""
        epoch, i = divmod(b, self.per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = (np.random.default_rng([self.seed, epoch]).permutation(self.n) if self.shuffle
                           else np.arange(self.n))
        return self._order[i * self.batch_size : (i + 1) * self.batch_size]


class SeekableBatches:
    """``make(indices, b)`` for b = 0, 1, ...; ``seek(n)`` makes batch ``n`` the next one.

    ``repeat=False`` ends the stream after the first epoch.
    """

    def __init__(self, order: EpochOrder, make: Callable[[np.ndarray, int], Any], repeat: bool = True):
        self._order, self._make, self._repeat = order, make, repeat
        self._next = 0

    def __iter__(self) -> Iterator[Any]:
        return self

    def seek(self, n: int) -> None:
        """The next batch is batch ``n`` (0 = the first)."""
        self._next = n

    def __next__(self) -> Any:
        b = self._next
        if not self._repeat and self._order.epoch_of(b) > 0:
            raise StopIteration
        self._next = b + 1
        return self._make(self._order.batch(b), b)
