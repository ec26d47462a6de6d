"""The background thread that sends one trial's MLflow events: in order, batched, retried.

Consecutive metric events are merged and written with ``log_batch``; while the store
fails the data is kept and retried with exponential backoff (0.5 s, 1 s, ... capped at
``MAX_BACKOFF_S``) until ``retry_timeout_s`` of unbroken failure. See
:mod:`algoperf.tracking.observer` for the observer that feeds it.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from algoperf.tracking import artifacts, store
from algoperf.tracking.uri import display_uri

LOG = logging.getLogger("algoperf.tracking")
MAX_BACKOFF_S = 10.0
# Metric events merged into one send (each send is then split into 1000-metric requests).
MERGE_METRICS = 5000


def warn(message: str) -> None:
    """A warning on stderr (through logging, so a host application can route it)."""
    if not LOG.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("algoperf: warning: %(message)s"))
        LOG.addHandler(handler)
    LOG.warning(message)


@dataclass
class OpenRuns:
    experiment_name: str
    submission: str
    study: int
    ruleset: str | None
    trial_dir: str
    run_name: str
    tags: dict[str, str]
    params: dict[str, Any]
    resumed: bool  # the runner goes on from a checkpoint of an earlier attempt


@dataclass
class SendMetrics:
    metrics: list[Any]


@dataclass
class CloseRun:
    tags: dict[str, str]
    metrics: list[Any]
    files: list[tuple[Path, str | None]]
    status: str
    workload: str
    time_to_target: float | None


@dataclass
class Barrier:
    event: threading.Event = field(default_factory=threading.Event)


class Abandon:
    pass


_STOP = object()


class Sender(threading.Thread):
    """Sends one trial's events to MLflow in order, batching and retrying."""

    def __init__(self, tracking_uri: str, retry_timeout_s: float, label: str, import_hint: str):
        super().__init__(name=f"algoperf-mlflow:{label}", daemon=True)
        self.tracking_uri, self.retry_timeout_s = tracking_uri, retry_timeout_s
        self.label, self.import_hint = label, import_hint
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._abort = threading.Event()
        self.gave_up = False
        self.dropped = 0  # metric values never sent
        self.sent = 0  # metric values sent
        self._failing_since: float | None = None
        self._warned_retrying = False
        self.client = None
        self.run_info = None  # mlflow RunInfo of the trial run
        self.parent_id: str | None = None
        self.steps: dict[str, set[int]] = {}

    def put(self, item: Any) -> None:
        self._queue.put(item)

    def stop_soon(self) -> None:
        """End the thread after what is queued."""
        self._queue.put(_STOP)

    def abandon(self) -> None:
        """The observer was dropped without on_end (the trial raised): mark the run KILLED."""
        self._queue.put(Abandon())
        self._queue.put(_STOP)

    def abort(self) -> None:
        self.gave_up = True
        self._abort.set()

    @property
    def failing(self) -> bool:
        """Whether the store is failing now (or was given up on): do not wait for it."""
        return self.gave_up or self._failing_since is not None

    # --- the loop ---------------------------------------------------------------------
    def run(self) -> None:
        backlog: collections.deque = collections.deque()
        while True:
            if not backlog:
                backlog.append(self._queue.get())
            while True:  # whatever else is waiting: consecutive metrics go out together
                try:
                    backlog.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            item = backlog.popleft()
            if item is _STOP:
                return
            if isinstance(item, Barrier):
                item.event.set()
                continue
            if isinstance(item, SendMetrics):
                merged = list(item.metrics)
                while backlog and isinstance(backlog[0], SendMetrics) and len(merged) < MERGE_METRICS:
                    merged += backlog.popleft().metrics
                item = SendMetrics(merged)
            if self.gave_up:
                self._count_dropped(item)
                continue
            self._with_retry(item)

    def _count_dropped(self, item: Any) -> None:
        if isinstance(item, SendMetrics | CloseRun):
            self.dropped += len(item.metrics)

    def _with_retry(self, item: Any) -> None:
        delay = 0.5
        while True:
            try:
                self._apply(item)
                self._failing_since = None
                return
            except Exception as e:  # noqa: BLE001 - any failure of the store must not reach the trial
                if store.is_permanent(e):
                    warn(f"MLflow refused part of the record of trial {self.label} "
                         f"({type(item).__name__.strip('_').lower()}): {short_error(e)}. {self.import_hint}")
                    self._count_dropped(item)
                    return
                now = time.monotonic()
                if self._failing_since is None:
                    self._failing_since = now
                if not self._warned_retrying:
                    self._warned_retrying = True
                    warn(f"MLflow at {display_uri(self.tracking_uri)} is not answering ({short_error(e)}); "
                         f"the trial goes on and logging is retried for up to {self.retry_timeout_s:.0f} s")
                failing_for = now - self._failing_since
                if failing_for >= self.retry_timeout_s or self._abort.is_set():
                    self._give_up(e, failing_for)
                    self._count_dropped(item)
                    return
                self._abort.wait(min(delay, self.retry_timeout_s - failing_for))
                delay = min(delay * 2, MAX_BACKOFF_S)

    def _give_up(self, error: BaseException, failing_for: float) -> None:
        self.gave_up = True
        warn(f"MLflow: gave up logging trial {self.label} to {display_uri(self.tracking_uri)} after "
             f"{failing_for:.0f} s of failures ({short_error(error)}). The trial's AlgoPerf-format logs are "
             f"complete; {self.import_hint}")

    # --- the MLflow calls -------------------------------------------------------------
    def _apply(self, item: Any) -> None:
        if isinstance(item, OpenRuns):
            self._open(item)
        elif isinstance(item, Abandon):
            if self.run_info is not None:
                self.client.set_terminated(self.run_info.run_id, status="KILLED")
        elif self.run_info is None:  # opening was refused (and reported): nothing to add to
            self._count_dropped(item)
        elif isinstance(item, SendMetrics):
            self._log_metrics(item.metrics)
        elif isinstance(item, CloseRun):
            self._close(item)

    def _open(self, op: OpenRuns) -> None:
        client = self.client or store.client_for(self.tracking_uri)
        self.client = client
        experiment_id = store.get_or_create_experiment(client, self.tracking_uri, op.experiment_name)
        self.parent_id = store.get_or_create_study_run(client, experiment_id, op.submission, op.study, op.ruleset)
        tags = {**op.tags, store.PARENT_TAG: self.parent_id}
        run = store.find_trial_run(client, experiment_id, op.trial_dir)
        if run is not None and not op.resumed and run.data.tags.get(store.ATTEMPT_TAG) != op.tags[store.ATTEMPT_TAG]:
            # The folder was emptied and the trial starts over: its old run mirrors logs
            # that no longer exist. Deleted (recoverable from the dashboard's trash).
            client.delete_run(run.info.run_id)
            run = None
        if run is None:
            run = client.create_run(experiment_id, run_name=op.run_name, tags=tags)
            steps: dict[str, set[int]] = {}
            tags = {}  # set with the run
        else:  # resumed trial, or this attempt's own run after a retry: go on in it
            steps = store.logged_steps(client, run)
            if run.info.status != "RUNNING":
                client.update_run(run.info.run_id, status="RUNNING")
        store.log_batches(client, run.info.run_id, params=store.new_params(run, op.params), tags=tags)
        self.run_info, self.steps = run.info, steps

    def _log_metrics(self, metrics: list[Any]) -> None:
        fresh, seen = [], set()
        for m in metrics:
            if m.step in self.steps.get(m.key, ()) or (m.key, m.step) in seen:
                continue  # already in the run (resumed trial): one value per step
            seen.add((m.key, m.step))
            fresh.append(m)
        store.log_batches(self.client, self.run_info.run_id, metrics=fresh)
        for key, step in seen:
            self.steps.setdefault(key, set()).add(step)
        self.sent += len(fresh)

    def _close(self, op: CloseRun) -> None:
        client, run_id = self.client, self.run_info.run_id
        self._log_metrics(op.metrics)
        store.log_batches(client, run_id, tags=op.tags)
        run = client.get_run(run_id)
        artifacts.log_files(client, self.tracking_uri, run, op.files)
        client.set_terminated(run_id, status=op.status)
        if self.parent_id:
            store.update_study_run(client, self.parent_id, op.workload, op.time_to_target)


def short_error(error: BaseException, limit: int = 300) -> str:
    text = f"{type(error).__name__}: {error}".splitlines()[0]
    return text if len(text) <= limit else text[:limit] + "..."
