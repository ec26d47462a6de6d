"""Trial processes own their cores: per-core flock claims, pinning, one attempt per trial.

Two trials never share a core: a ``cpu:N`` trial pins its process to N cores of its own
(``sched_setaffinity``), claimed with lock files that the kernel frees when the process
dies, so XLA sizes its thread pool to N and neighbours cannot steal them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_HELD_CORE_LOCKS: list[Any] = []  # open for the life of the (one-trial) worker process


def _core_lock_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"algoperf-cpu-locks-{os.getuid()}"
    path.mkdir(exist_ok=True)
    return path


def pin_cores(n: int, wait_s: float = 300.0, on_wait: Callable[[], None] | None = None) -> list[int] | None:
    """Claim ``n`` cores no other trial process holds and pin this process to them.

    Each core is claimed by an exclusive ``flock`` on a per-core lock file; the kernel
    drops the lock when the process exits or is killed, so a dead trial never keeps its
    cores. The locks are per machine, so trials of two Ray instances on one machine do
    not share cores either. Returns the cores, or None if ``n`` free ones did not appear
    within ``wait_s`` (a trial that just ended may still be exiting, or another Ray
    instance's trial holds them: ``on_wait`` is called once when waiting starts).
    """
    allowed = sorted(os.sched_getaffinity(0))
    if n > len(allowed):
        return None
    lock_dir = _core_lock_dir()
    deadline = time.monotonic() + wait_s
    while True:
        held: list[tuple[int, Any]] = []
        for core in allowed:
            handle = (lock_dir / f"cpu{core}.lock").open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            held.append((core, handle))
            if len(held) == n:
                break
        if len(held) == n:
            cores = [core for core, _ in held]
            os.sched_setaffinity(0, cores)
            _HELD_CORE_LOCKS.extend(handle for _, handle in held)
            return cores
        for _, handle in held:
            handle.close()
        if time.monotonic() > deadline:
            return None
        if on_wait is not None:
            on_wait()
            on_wait = None
        time.sleep(0.2)


@contextlib.contextmanager
def trial_lock(trial_dir: Path, on_wait: Callable[[], None]) -> Iterator[None]:
    """One attempt of a trial at a time (an orphan of a killed driver may still run)."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    with (trial_dir / ".algoperf.lock").open("a") as handle:
        waited = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if not waited:
                    on_wait()
                    waited = True
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
