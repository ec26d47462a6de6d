"""What an exception during an eval does to a trial.

The reference runner logs an eval that raises and keeps training (it catches
``RuntimeError``, and says so when the device ran out of memory); an exception of any
other type ends its trial. Here every exception in an eval is recorded (the step, its
kind and its traceback in ``eval_errors.txt`` in the trial folder, and a count in the
trial's result) and training goes on, with one limit by kind:

* out of device memory (``RESOURCE_EXHAUSTED``/"out of memory"): the eval's own
  footprint, not the submission's fault, and possibly transient (the memory the
  training state holds changes); training goes on however often it happens, as in the
  reference.
* anything else is a bug (in the workload's eval, or a model state it cannot
  evaluate). Once may be transient (e.g. a file read); the same trial failing
  ``MAX_CONSECUTIVE_BUGS`` evals in a row fails the trial with a message that says so,
  since every later eval would fail the same way and the trial could never reach its
  target. The trial's logs so far are kept either way.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path

EVAL_ERRORS_FILE = "eval_errors.txt"
MAX_CONSECUTIVE_BUGS = 2
OUT_OF_MEMORY = "out_of_memory"
BUG = "error"


class EvalFailedError(RuntimeError):
    """Evals of a trial keep raising (not out of memory): the trial cannot go on."""


def kind_of(exc: BaseException) -> str:
    """``OUT_OF_MEMORY`` or ``BUG``."""
    text = f"{type(exc).__name__}: {exc}"
    return OUT_OF_MEMORY if re.search(r"RESOURCE_EXHAUSTED|[Oo]ut of memory|OOM", text) else BUG


class EvalErrors:
    """The eval exceptions of one trial: recorded, counted, and the limit applied."""

    def __init__(self, trial_path: str | Path, count: int = 0):
        self.path = Path(trial_path) / EVAL_ERRORS_FILE
        self.count = count
        self._bugs_in_a_row: list[tuple[int, str]] = []

    def record(self, step: int, exc: BaseException) -> None:
        """Record ``exc`` raised by the eval after ``step``; raise EvalFailedError at the limit."""
        kind = kind_of(exc)
        self.count += 1
        line = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        with self.path.open("a") as f:
            f.write(f"=== eval after step {step}: {kind}: {line}\n{text}\n")
        if kind == OUT_OF_MEMORY:
            return
        self._bugs_in_a_row.append((step, line))
        if len(self._bugs_in_a_row) >= MAX_CONSECUTIVE_BUGS:
            steps = ", ".join(str(s) for s, _ in self._bugs_in_a_row)
            raise EvalFailedError(
                f"the eval raised {len(self._bugs_in_a_row)} times in a row (after steps {steps}; last: {line}): "
                f"a bug in the workload's eval or a model state it cannot evaluate, not out of memory; "
                f"every traceback is in {self.path}"
            ) from exc

    def succeeded(self) -> None:
        """An eval went through: the run of failures is broken."""
        self._bugs_in_a_row.clear()
