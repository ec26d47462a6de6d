"""Live MLflow logging of trials: a TrialObserver that never slows or kills a trial.

The runner calls observers outside the timed region; this one only turns each event into
MLflow entities and puts them on a queue (microseconds). A background thread per trial
sends them: consecutive metric events are merged and written with ``log_batch`` (1000
metrics per request), params and tags 100 per request.

When the tracking store fails (server down, slow, SQLite locked), the thread keeps the
data and retries with exponential backoff (0.5 s, 1 s, 2 s, ... capped at 10 s). After
``retry_timeout_s`` of unbroken failure it gives up, warning once with the command that
re-imports the trial: the trial's AlgoPerf-format folder is the source of truth and
``algoperf mlflow import`` rebuilds the same runs from it without duplicates. A request
that MLflow rejects (HTTP 4xx) is not retried: it is reported and the rest goes on.

Sending overlaps nothing timed when the store answers: ``on_start`` waits (up to
``sync_wait_s`` x 6) for the runs to exist, which also takes MLflow's imports and database
setup out of the first timed steps, and ``on_submission_metrics`` (the runner's last call
of each eval, inside its untimed logging region) waits up to ``sync_wait_s`` for the
eval's metrics to be sent. While the store fails, nothing waits: the data queues.
``on_end`` waits for the queue to drain (at most ``retry_timeout_s`` + 60 s), so a
trial's run is complete when ``run_trial`` returns, even in a Ray worker about to exit.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from algoperf.tracking import store
from algoperf.tracking.uri import display_uri

LOG = logging.getLogger("algoperf.tracking")
DEFAULT_RETRY_TIMEOUT_S = 60.0
DEFAULT_SYNC_WAIT_S = 5.0
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


def submission_name_of(path: str | Path) -> str:
    """A submission's name from its file path (as ``algoperf.submission.loading`` names it)."""
    path = Path(path)
    return path.parent.name if path.name == "submission.py" else path.stem


# --- what the sender is asked to do ---------------------------------------------------
@dataclass
class _Open:
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
class _Metrics:
    metrics: list[Any]


@dataclass
class _Close:
    tags: dict[str, str]
    metrics: list[Any]
    files: list[tuple[Path, str | None]]
    status: str
    workload: str
    time_to_target: float | None


@dataclass
class _Barrier:
    event: threading.Event = field(default_factory=threading.Event)


class _Abandon:
    pass


_STOP = object()


class _Sender(threading.Thread):
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
        self._queue.put(_Abandon())
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
            if isinstance(item, _Barrier):
                item.event.set()
                continue
            if isinstance(item, _Metrics):
                merged = list(item.metrics)
                while backlog and isinstance(backlog[0], _Metrics) and len(merged) < MERGE_METRICS:
                    merged += backlog.popleft().metrics
                item = _Metrics(merged)
            if self.gave_up:
                self._count_dropped(item)
                continue
            self._with_retry(item)

    def _count_dropped(self, item: Any) -> None:
        if isinstance(item, _Metrics | _Close):
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
                         f"({type(item).__name__.strip('_').lower()}): {_short(e)}. {self.import_hint}")
                    self._count_dropped(item)
                    return
                now = time.monotonic()
                if self._failing_since is None:
                    self._failing_since = now
                if not self._warned_retrying:
                    self._warned_retrying = True
                    warn(f"MLflow at {display_uri(self.tracking_uri)} is not answering ({_short(e)}); "
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
             f"{failing_for:.0f} s of failures ({_short(error)}). The trial's AlgoPerf-format logs are "
             f"complete; {self.import_hint}")

    # --- the MLflow calls -------------------------------------------------------------
    def _apply(self, item: Any) -> None:
        if isinstance(item, _Open):
            self._open(item)
        elif isinstance(item, _Abandon):
            if self.run_info is not None:
                self.client.set_terminated(self.run_info.run_id, status="KILLED")
        elif self.run_info is None:  # opening was refused (and reported): nothing to add to
            self._count_dropped(item)
        elif isinstance(item, _Metrics):
            self._log_metrics(item.metrics)
        elif isinstance(item, _Close):
            self._close(item)

    def _open(self, op: _Open) -> None:
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

    def _close(self, op: _Close) -> None:
        client, run_id = self.client, self.run_info.run_id
        self._log_metrics(op.metrics)
        store.log_batches(client, run_id, tags=op.tags)
        run = client.get_run(run_id)
        store.log_files(client, self.tracking_uri, run, op.files)
        client.set_terminated(run_id, status=op.status)
        if self.parent_id:
            store.update_study_run(client, self.parent_id, op.workload, op.time_to_target)


def _short(error: BaseException, limit: int = 300) -> str:
    text = f"{type(error).__name__}: {error}".splitlines()[0]
    return text if len(text) <= limit else text[:limit] + "..."


class MlflowObserver:
    """A :class:`algoperf.runner.trial.TrialObserver` that mirrors one trial into MLflow."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        retry_timeout_s: float = DEFAULT_RETRY_TIMEOUT_S,
        sync_wait_s: float = DEFAULT_SYNC_WAIT_S,
        store_uri: str | None = None,
    ):
        self.tracking_uri, self.experiment_name = tracking_uri, experiment_name
        self.retry_timeout_s, self.sync_wait_s = retry_timeout_s, sync_wait_s
        self.store_uri = store_uri or tracking_uri  # what to re-import into if this fails
        self._sender: _Sender | None = None
        self._evals: list[tuple[int, float | None]] = []
        self._workload = ""
        self._submission_path: str | None = None
        self._trial_dir: Path | None = None
        self._attempt = uuid.uuid4().hex

    # TrialObserver ----------------------------------------------------------------------
    def on_start(self, config: Any, meta: dict[str, Any]) -> None:
        import mlflow.entities  # noqa: F401 - import here, untimed, not in the trial's first eval

        trial_dir = Path(config.path).resolve()
        self._trial_dir, self._workload = trial_dir, config.workload
        self._submission_path = meta.get("submission_path") or str(config.submission)
        submission = meta.get("submission") or submission_name_of(config.submission)
        study = config.study_index if config.study_index is not None else 0
        tags = store.trial_tags(
            workload=config.workload, submission=submission, study=study, trial=config.trial_index,
            ruleset=config.ruleset, trial_dir=str(trial_dir), framework=meta.get("framework", "jax"),
            seed=config.seed, meta=meta,
        )
        tags.update({k: str(v) for k, v in (("algoperf.max_steps", config.max_steps), ("algoperf.budget_factor", config.budget_factor)) if v is not None})
        # Which start of this folder the run mirrors (a retried create must find its own run).
        tags[store.ATTEMPT_TAG] = self._attempt
        campaign = Path(config.experiment_dir).resolve() / config.experiment_name
        hint = (f"re-import it with `algoperf mlflow import {campaign} --experiment {self.experiment_name} "
                f"--tracking-uri {display_uri(self.store_uri)}`")
        if self._sender is None:
            self._sender = _Sender(self.tracking_uri, self.retry_timeout_s, str(trial_dir), hint)
            self._sender.start()
            # A trial that raises past on_end (bad checkpoint, missing data) must leave
            # neither a waiting thread nor a run that looks alive forever.
            weakref.finalize(self, self._sender.abandon)
        self._sender.put(_Open(
            experiment_name=self.experiment_name, submission=submission, study=study,
            ruleset=config.ruleset, trial_dir=str(trial_dir),
            run_name=store.trial_run_name(config.workload, config.trial_index, submission, study),
            tags=tags, params=dict(config.hyperparameters or {}),
            resumed=bool(meta.get("preemption_count")) and meta.get("resumed_from_step") is not None,
        ))
        self._wait_sent(6 * self.sync_wait_s)

    def on_eval(self, global_step: int, row: dict[str, float]) -> None:
        self._evals.append((global_step, store.finite_or_none(row.get("accumulated_submission_time"))))
        if self._sender is not None:
            self._sender.put(_Metrics(store.make_metrics(row, global_step, store.now_ms())))

    def on_submission_metrics(self, rows: list[tuple[int, str, float]]) -> None:
        if self._sender is None:
            return
        if rows:
            from mlflow.entities import Metric

            ts = store.now_ms()
            self._sender.put(_Metrics([Metric(store.metric_key(n), float(v), ts, int(s)) for s, n, v in rows]))
        self._wait_sent(self.sync_wait_s)  # this eval's metrics too (on_eval queued them)

    def on_end(self, result: Any) -> None:
        sender = self._sender
        if sender is None:
            return
        ttt = result.time_to_result
        metrics = []
        if ttt is not None:
            # Logged at the eval that reached the target (the runner's own decision).
            step = next((s for s, t in self._evals if t is not None and abs(t - ttt) <= 1e-9 * max(1.0, ttt)), result.global_step)
            metrics = store.make_metrics({"time_to_target": ttt}, step, store.now_ms())
        if getattr(result, "best_validation", None) is not None:  # a runs-table column
            metrics += store.make_metrics({"best_validation": result.best_validation}, result.global_step, store.now_ms())
        files = store.trial_files(self._trial_dir) + store.submission_files(self._submission_path)
        sender.put(_Close(
            tags=store.end_tags(result.status, result.stop_reason, result.error), metrics=metrics,
            files=files, status=store.run_status(result.status), workload=self._workload, time_to_target=ttt,
        ))
        sender.stop_soon()
        self.finish(self.retry_timeout_s + 60.0)

    # Extras ---------------------------------------------------------------------------
    def attach_progress(self, progress: Any) -> None:
        """Accepted and ignored (the runner offers it to every observer)."""

    def _wait_sent(self, timeout: float) -> None:
        """Let the queue drain inside the runner's untimed region; stop waiting as soon
        as the store fails (then the data queues and the trial goes on)."""
        sender = self._sender
        if sender is None or sender.failing or not sender.is_alive() or timeout <= 0:
            return
        barrier = _Barrier()
        sender.put(barrier)
        deadline = time.monotonic() + timeout
        while not barrier.event.wait(0.05):
            if sender.failing or time.monotonic() > deadline:
                return

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is sent (or dropped); False on timeout."""
        if self._sender is None or not self._sender.is_alive():
            return True
        barrier = _Barrier()
        self._sender.put(barrier)
        return barrier.event.wait(timeout)

    def finish(self, timeout: float) -> None:
        """Wait for the sender to end; past ``timeout``, give up on what is left."""
        sender = self._sender
        if sender is None:
            return
        sender.join(timeout)
        if sender.is_alive():
            sender.abort()
            warn(f"MLflow: still sending trial {sender.label} after {timeout:.0f} s; gave up. "
                 f"{sender.import_hint}")

    @property
    def gave_up(self) -> bool:
        return self._sender is not None and self._sender.gave_up

    @property
    def run_id(self) -> str | None:
        return self._sender.run_info.run_id if self._sender and self._sender.run_info else None


@dataclass(frozen=True)
class TrackerFactory:
    """Makes one :class:`MlflowObserver` per trial; picklable, so Ray can ship it.

    ``observer_for`` is called in the process that runs the trial (a Ray worker or the
    driver). ``prepare`` (optional, in the driver) creates the experiment and the study
    runs up front and checks the store is reachable.
    """

    tracking_uri: str
    experiment_name: str
    retry_timeout_s: float = DEFAULT_RETRY_TIMEOUT_S
    sync_wait_s: float = DEFAULT_SYNC_WAIT_S
    # The store behind ``tracking_uri`` when that is a server started only for this
    # campaign (ensure_server_for_workers): named in messages and re-import hints.
    store_uri: str | None = None

    def observer_for(self, config: Any) -> MlflowObserver:
        return MlflowObserver(self.tracking_uri, self.experiment_name, self.retry_timeout_s, self.sync_wait_s, self.store_uri)

    def prepare(self, configs: list[Any], submission_name: str | None = None) -> str:
        """Create the experiment and one parent run per study; the experiment id.

        Raises :class:`TrackingError` (bad setup) or MLflow's exceptions (store down).
        """
        client = store.client_for(self.tracking_uri)
        experiment_id = store.get_or_create_experiment(client, self.tracking_uri, self.experiment_name)
        studies = dict.fromkeys(
            (submission_name or submission_name_of(c.submission), c.study_index if c.study_index is not None else 0, c.ruleset)
            for c in configs
        )
        for submission, study, ruleset in studies:
            store.get_or_create_study_run(client, experiment_id, submission, study, ruleset)
        return experiment_id
