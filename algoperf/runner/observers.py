"""Who hears about a trial: the observer protocol, one way to combine observers, and the
console observer of ``algoperf run``.

Observers are called outside the timed region (``algoperf.runner.clock``): at the start, at
each eval, with the submission's own metrics, and at the end. MLflow tracking
(``algoperf.tracking.observer``) and the Ray progress board (``algoperf.campaign.progress``)
are observers too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.console import Console

    from algoperf.runner.types import TrialConfig, TrialResult


class TrialObserver(Protocol):
    """Receives a trial's events (MLflow tracking, progress display). Called untimed.

    An observer may also define ``attach_progress(read)``: ``read()`` gives the trial's
    live step and submission time (for a progress display polling from another thread).
    """

    def on_start(self, config: TrialConfig, meta: dict[str, Any]) -> None: ...
    def on_eval(self, global_step: int, row: dict[str, float]) -> None: ...
    def on_submission_metrics(self, rows: list[tuple[int, str, float]]) -> None: ...
    def on_end(self, result: TrialResult) -> None: ...


class _Combined:
    """Several observers as one: each event goes to each, in order."""

    def __init__(self, observers: list[Any]):
        self.observers = observers

    def on_start(self, config: Any, meta: dict[str, Any]) -> None:
        for o in self.observers:
            o.on_start(config, meta)

    def on_eval(self, global_step: int, row: dict[str, float]) -> None:
        for o in self.observers:
            o.on_eval(global_step, row)

    def on_submission_metrics(self, rows: list[tuple[int, str, float]]) -> None:
        for o in self.observers:
            o.on_submission_metrics(rows)

    def on_end(self, result: Any) -> None:
        for o in self.observers:
            o.on_end(result)

    def attach_progress(self, read: Callable[[], dict[str, Any]]) -> None:
        for o in self.observers:
            if hasattr(o, "attach_progress"):
                o.attach_progress(read)


def combine_observers(*observers: Any) -> Any:
    """One observer forwarding to each given one (Nones skipped); None if none is left."""
    present = [o for o in observers if o is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else _Combined(present)


class ConsoleObserver:
    """Prints a trial's header (hardware, batch size and why, budget) and one line per eval."""

    def __init__(self, console: Console, label: str, target_key: str, target: float, budget: float):
        self.console = console
        self.label, self.target_key, self.target, self.budget = label, target_key, target, budget

    def on_start(self, config: Any, meta: dict[str, Any]) -> None:
        batch = f"batch size {meta['batch_size']} ({meta['batch_size_source']})" if meta.get("batch_size") else "no batch size"
        self.console.print(f"[bold]{self.label}[/] on {meta['hardware_label']}, {batch}, budget {self.budget:.0f} s", highlight=False)
        if meta.get("submission_style") == "pmap":
            self.console.print(f"  pmap-style submission, driven by v0.5's conventions ({meta.get('submission_style_reason')})", highlight=False)

    def on_eval(self, global_step: int, row: dict[str, float]) -> None:
        value = row.get(self.target_key, float("nan"))
        self.console.print(
            f"  step {global_step:>7}  submission time {row['accumulated_submission_time']:8.2f} / {self.budget:.0f} s  "
            f"{self.target_key} {value:.4f} (target {self.target})",
            highlight=False,
        )

    def on_submission_metrics(self, rows: list[tuple[int, str, float]]) -> None:
        pass

    def on_end(self, result: Any) -> None:
        pass
