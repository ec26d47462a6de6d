"""The stall watch: a trial in which nothing runs any more ends, recorded, instead of never.

A wait that never returns (a deadlock inside XLA's CPU runtime: docs/submissions.md's
batched-LAPACK case) would hold the trial, and the campaign behind it, forever. A trial
that trains uses CPU time, however busy the machine: compiling, dispatching, computing,
reading data. One in which no thread has run for a whole window is stuck. So while the
trial trains, a watcher thread samples the process's CPU time (all threads): once it grew
by less than ``IDLE_SHARE`` of a wall-clock window of ``window_s`` seconds, the watcher calls
``on_stall`` (the trial records itself as failed, with every thread's Python stack) and
ends the process with ``EXIT_CODE``: stuck native threads cannot be stopped, and a retry
under Ray finds the recorded result and does not run the trial again.

The window is ``ALGOPERF_STALL_SECONDS`` (default 300 on CPU, off on accelerators; 0 turns
the watch off). A nice-19 process beside busy cores still gets about 1.5% of a core, far above
``IDLE_SHARE``; a process that was suspended (SIGSTOP, a paused VM) is not judged across the pause.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from algoperf.runner.failure import TrialFailure

DEFAULT_WINDOW_S = 300.0
IDLE_SHARE = 0.002  # CPU seconds per wall-clock second below which the process counts as stuck
EXIT_CODE = 75


def window_from_env(platform: str = "cpu") -> float:
    """``ALGOPERF_STALL_SECONDS`` in seconds (0: no watch); unset: 300 s on CPU, off on accelerators.

    On a GPU or TPU the host may legitimately sit idle in a long wait while the device works
    through queued steps, so there the watch runs only when asked for.
    """
    text = os.environ.get("ALGOPERF_STALL_SECONDS", "").strip()
    if not text:
        return DEFAULT_WINDOW_S if platform == "cpu" else 0.0
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"ALGOPERF_STALL_SECONDS={text!r}: give a number of seconds (0 turns the watch off)") from None
    if value < 0:
        raise ValueError(f"ALGOPERF_STALL_SECONDS={text!r}: give 0 or more seconds")
    return value


def add_sample(samples: list[tuple[float, float]], sample: tuple[float, float], window_s: float,
               poll_s: float) -> list[tuple[float, float]]:
    """The (wall, CPU) samples to judge by once ``sample`` is taken, oldest first.

    Only the newest sample at least a window old is kept of the older ones. A gap of more
    than three polls means the whole process was not running (suspended, or the machine
    paused), not that its threads were stuck: the record starts again from ``sample``.
    """
    if samples and sample[0] - samples[-1][0] > 3 * poll_s:
        return [sample]
    samples = [*samples, sample]
    while len(samples) > 2 and sample[0] - samples[1][0] >= window_s:
        samples.pop(0)
    return samples


def is_stuck(samples: list[tuple[float, float]], window_s: float) -> bool:
    """Whether (wall, CPU) samples, oldest first, show a whole window with (almost) no CPU used."""
    (t0, cpu0), (t1, cpu1) = samples[0], samples[-1]
    return t1 - t0 >= window_s and cpu1 - cpu0 < IDLE_SHARE * (t1 - t0)


class StallWatch:
    """Within ``watching()``, calls ``on_stall(seconds idle)`` and ends the process once it is stuck."""

    def __init__(self, window_s: float, on_stall: Callable[[float], None],
                 exit_process: Callable[[int], None] = os._exit,
                 cpu_time: Callable[[], float] = time.process_time):
        self.window_s = window_s
        self._on_stall = on_stall
        self._exit = exit_process
        self._cpu_time = cpu_time

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Watch the process for as long as the block runs."""
        if self.window_s <= 0:
            yield
            return
        stop = threading.Event()
        thread = threading.Thread(target=self._watch, args=(stop,), name="algoperf-stall-watch", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _watch(self, stop: threading.Event) -> None:
        poll = max(0.05, min(self.window_s / 10, 10.0))
        samples = [(time.monotonic(), self._cpu_time())]
        while not stop.wait(poll):
            samples = add_sample(samples, (time.monotonic(), self._cpu_time()), self.window_s, poll)
            if is_stuck(samples, self.window_s):
                try:
                    self._on_stall(samples[-1][0] - samples[0][0])
                finally:
                    self._exit(EXIT_CODE)
                return


def stall_message(idle_s: float, window_s: float) -> str:
    """What a stalled trial records as its error."""
    return (f"the trial stopped making progress: no thread of it used CPU for {idle_s:.0f} s (window "
            f"{window_s:.0f} s, ALGOPERF_STALL_SECONDS): a deadlock in the runtime, not a slow step. On CPU a "
            "known cause is independent batched linear algebra (eigh, svd, ...) run side by side; see "
            "docs/submissions.md, or pin the trial to one core (--hardware cpu:1)")


def stall_failure(idle_s: float, window_s: float) -> TrialFailure:
    """The failure a stalled trial records: the message, then every other thread's Python stack."""
    message = stall_message(idle_s, window_s)
    stacks = "".join(
        f"Thread {ident}:\n" + "".join(traceback.format_stack(frame))
        for ident, frame in sys._current_frames().items() if ident != threading.get_ident()  # not the watcher's
    )
    return TrialFailure(f"DeviceStalled: {message}", None, None, f"DeviceStalled: {message}\n\n{stacks}")
