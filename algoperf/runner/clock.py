"""The trial clock: the one place that decides what time a submission is charged.

Wall time is charged to the submission except inside ``excluded`` blocks (evaluation,
logging, checkpoints). The clock is read exactly only after the device has finished the
work queued so far (``charge(wait_for=...)``), so JAX's asynchronous dispatch can neither
hide training work from the submission's time nor leak it into eval time. Between those
points ``peek`` reads the host clock without waiting: cheap enough to call every step,
and never later than the exact time (queued work only adds to it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import jax


def wait_for_device(tree: Any) -> None:
    """Block until every array in ``tree`` is computed."""
    jax.block_until_ready(tree)


class TrialClock:
    """Accumulates submission, eval and logging time of one trial, in seconds."""

    def __init__(self, now: Callable[[], float] = time.perf_counter, submission_time: float = 0.0):
        self._now = now
        self.submission_time = submission_time
        self.excluded_time: dict[str, float] = {"eval": 0.0, "logging": 0.0}
        self._started_at: float | None = None
        self._mark: float | None = None

    @property
    def started(self) -> bool:
        """Whether ``start`` was called (training began)."""
        return self._started_at is not None

    def start(self, already_elapsed: float = 0.0) -> None:
        """Start charging the submission from now.

        ``already_elapsed``: wall time of earlier attempts (a resumed trial), so that
        ``elapsed`` (total_duration) goes on from the checkpoint's.
        """
        self._mark = self._now()
        self._started_at = self._mark - already_elapsed

    @property
    def elapsed(self) -> float:
        """Wall time since ``start`` (AlgoPerf's total_duration)."""
        return self._now() - self._started_at

    def now(self) -> float:
        """A reading of the clock (seconds on its own scale; differences are durations)."""
        return self._now()

    def peek(self, now: float | None = None) -> float:
        """Submission time so far by the host clock (read now, or the reading ``now``),
        without waiting for the device."""
        return self.submission_time + ((self._now() if now is None else now) - self._mark)

    def charge(self, wait_for: Any = None) -> float:
        """Wait for ``wait_for`` on the device, then charge the time since the last mark."""
        if wait_for is not None:
            wait_for_device(wait_for)
        now = self._now()
        self.submission_time += now - self._mark
        self._mark = now
        return self.submission_time

    @contextmanager
    def excluded(self, kind: str) -> Iterator[None]:
        """A span not charged to the submission (call ``charge`` before entering)."""
        begin = self._now()
        try:
            yield
        finally:
            end = self._now()
            self.excluded_time[kind] = self.excluded_time.get(kind, 0.0) + (end - begin)
            self._mark = end
