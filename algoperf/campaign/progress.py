"""Live progress of a campaign: trial processes report to a board (a Ray actor), the
driver renders it as a table."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from algoperf.runner.trial import TrialConfig

FINAL_STATES = ("finished", "skipped", "error", "refused", "lost")


class ProgressBoard:
    """A Ray actor that trial processes report to and the driver reads (num_cpus=0).

    It also decides which kind of hardware the campaign runs on: the first trial to ask
    (``claim``) fixes it, unless an earlier run of the campaign already did.
    """

    def __init__(self, kind: str | None = None, allow_mixed: bool = False):
        self.kind, self.allow_mixed = kind, allow_mixed
        self.trials: dict[str, dict[str, Any]] = {}

    def claim(self, key: str, kind: str) -> str | None:
        if self.kind is None:
            self.kind = kind
        if kind == self.kind or self.allow_mixed:
            return None
        return (
            f"landed on {kind}, but this campaign runs on {self.kind}; label the nodes of one kind and "
            "ask for them with --hardware SPEC@LABEL, or pass --allow-mixed-hardware"
        )

    def report(self, key: str, fields: dict[str, Any]) -> None:
        entry = self.trials.setdefault(key, {})
        evaluated = fields.pop("eval", None)
        entry.update(fields)
        if evaluated is not None:
            value = evaluated.get(entry.get("target_key", ""))
            if value is not None and value == value:  # not NaN
                best = entry.get("best")
                better = best is None or (value > best if entry.get("higher_is_better", True) else value < best)
                entry["best"] = value if better else best

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.trials.items()}

    def campaign_kind(self) -> str | None:
        return self.kind


class ProgressReporter:
    """The TrialObserver a trial process reports to the board with (calls never wait)."""

    def __init__(self, board: Any, key: str, interval_s: float = 1.0):
        self.board, self.key, self.interval_s = board, key, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _send(self, **fields: Any) -> None:
        with contextlib.suppress(Exception):  # the display must never break a trial
            self.board.report.remote(self.key, fields)

    def on_start(self, config: TrialConfig, meta: dict[str, Any]) -> None:
        self._send(state="running", pid=os.getpid(), host=meta["hardware"]["hostname"],
                   hardware=meta["hardware_label"], preemptions=meta.get("preemption_count", 0),
                   resumed_from=meta.get("resumed_from_step"))

    def attach_progress(self, read: Callable[[], dict[str, Any]]) -> None:
        """Poll the trial's step and clock once a second from a daemon thread."""

        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                with contextlib.suppress(Exception):
                    self._send(**read())

        self._thread = threading.Thread(target=loop, name="algoperf-progress", daemon=True)
        self._thread.start()

    def on_eval(self, global_step: int, row: dict[str, float]) -> None:
        self._send(global_step=global_step, submission_time=row["accumulated_submission_time"],
                   eval={k: v for k, v in row.items() if k.startswith("validation/")})

    def on_submission_metrics(self, rows: list[tuple[int, str, float]]) -> None:
        pass

    def on_end(self, result: Any) -> None:
        self.stop()
        self._send(state=result.status, global_step=result.global_step,
                   submission_time=result.accumulated_submission_time)

    def stop(self) -> None:
        self._stop.set()


def trial_label(config: TrialConfig, several_experiments: bool) -> str:
    parts = [config.workload]
    if config.study_index is not None:
        parts.append(f"study {config.study_index}")
    parts.append(f"trial {config.trial_index}")
    label = " ".join(parts)
    return f"{config.experiment_name}/{label}" if several_experiments else label


def render(rows: list[dict[str, Any]], title: str, warning: str | None = None) -> Group:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    summary = Text(
        "  ".join(f"{state}: {n}" for state, n in sorted(counts.items(), key=lambda kv: _ORDER.get(kv[0], 9))),
        style="bold",
    )
    table = Table(title=title, expand=False)
    for column in ("trial", "state", "where", "step", "time / budget (s)", "best / target"):
        table.add_column(column, justify="right" if column in ("step", "time / budget (s)") else "left")
    # Trials in progress first, then the most recently listed ended ones; at most 30 lines.
    active = [r for r in rows if r["state"] not in (*FINAL_STATES, "failed", "queued")]
    ended = [r for r in rows if r["state"] in (*FINAL_STATES, "failed")]
    shown = (active + ended[::-1])[:30]
    for r in shown:
        best = r.get("best")
        metric = r.get("target_key", "").split("/")[-1]
        best_text = "-" if best is None else f"{metric} {best:.4f} / {r.get('target')}"
        time_text = "-" if r.get("submission_time") is None else f"{r['submission_time']:.1f} / {r['budget']:.0f}"
        where = r.get("host", "")
        if r.get("pid"):
            where += f" pid {r['pid']}"
        if r.get("preemptions"):
            where += f" (resumed x{r['preemptions']})"
        table.add_row(r["label"], r["state"], where, str(r.get("global_step", "-")), time_text, best_text)
    return Group(summary, table, *([Text(warning, style="bold red")] if warning else []))


_ORDER = {"queued": 0, "running": 1, "finished": 2, "skipped": 3, "failed": 4, "error": 5, "refused": 6, "lost": 7}
