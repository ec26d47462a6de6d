"""Why a trial failed, in one line a researcher can act on.

A failed trial keeps its full traceback (``traceback.txt`` in the trial folder, the
``algoperf.error`` tag and an artifact in MLflow); the terminal gets one line: the
exception, the submission's file and line where it was raised (the innermost frame in
the submission's folder, else the innermost frame), and, where the message is one we
recognise, the likely cause and what to do.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from pathlib import Path

# (pattern on "ExceptionType: message", the cause in words). First match wins.
KNOWN_CAUSES: tuple[tuple[str, str], ...] = (
    (r"unbound axis name|axis name .* (is )?not bound|pmap.*inconsistent sizes|cannot select an axis to squeeze out",
     "pmap-style submission: v0.6 passes global batches and unreplicated params; "
     "run it with --submission-style pmap"),
    (r"has no attribute '(tree_map|tree_multimap|tree_leaves|tree_flatten|tree_unflatten|tree_structure)'",
     "written for an older JAX (these jax.* tree functions were removed); install AlgoPerf's pins "
     "with `pip install -c constraints/algoperf-v0.6.txt -e .`"),
    (r"clip\(\) got an unexpected keyword argument 'a_(min|max)'",
     "written for an older JAX (jnp.clip's a_min/a_max were removed); install AlgoPerf's pins "
     "with `pip install -c constraints/algoperf-v0.6.txt -e .`"),
    (r"No module named '(jraph|torch|tensorflow)",
     "a third-party package the submission imports is missing; `pip install \"algoperf[v05]\"` "
     "installs those of the published v0.5 submissions"),
    (r"RESOURCE_EXHAUSTED|[Oo]ut of memory",
     "out of device memory: a smaller batch size (--batch-size WORKLOAD=N) may fit"),
    (r"BatchSizeError|get_batch_size",
     "no batch size for this workload: pass --batch-size WORKLOAD=N"),
)


@dataclass(frozen=True)
class TrialFailure:
    """A failed trial's exception, where it was raised, its likely cause, and the traceback."""

    exception: str  # "ValueError: message" (first line of the message)
    location: str | None  # "path/to/submission.py:123"
    cause: str | None
    traceback: str

    def details(self) -> str:
        """The exception line, then the full traceback (``TrialResult.error``)."""
        return f"{self.exception}\n{self.traceback}"

    def summary(self) -> str:
        """The one line for the terminal and result tables."""
        line = self.exception
        if self.location:
            line += f" (at {self.location})"
        if self.cause:
            line += f"; likely cause: {self.cause}"
        return line


def _location(exc: BaseException, submission_dir: Path | None) -> str | None:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    if submission_dir is not None:
        inside = [f for f in frames if Path(f.filename).resolve().is_relative_to(submission_dir)]
        if inside:
            return f"{inside[-1].filename}:{inside[-1].lineno}"
    return f"{frames[-1].filename}:{frames[-1].lineno}"


def describe_failure(exc: BaseException, submission_path: str | Path | None = None) -> TrialFailure:
    """Describe ``exc`` raised while running the submission at ``submission_path``."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    exception = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    folder = Path(submission_path).resolve().parent if submission_path else None
    searched = f"{type(exc).__name__}: {exc}"
    cause = next((words for pattern, words in KNOWN_CAUSES if re.search(pattern, searched)), None)
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return TrialFailure(exception, _location(exc, folder), cause, text)
