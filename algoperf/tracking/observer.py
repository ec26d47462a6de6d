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

import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from algoperf.tracking import artifacts, store
from algoperf.tracking.sender import (
    Barrier,
    CloseRun,
    OpenRuns,
    Sender,
    SendMetrics,
    warn,
)
from algoperf.tracking.uri import display_uri

DEFAULT_RETRY_TIMEOUT_S = 60.0
DEFAULT_SYNC_WAIT_S = 5.0


def submission_name_of(path: str | Path) -> str:
    """A submission's name from its file path (as ``algoperf.submission.loading`` names it)."""
    path = Path(path)
    return path.parent.name if path.name == "submission.py" else path.stem


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
        self._sender: Sender | None = None
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
            self._sender = Sender(self.tracking_uri, self.retry_timeout_s, str(trial_dir), hint)
            self._sender.start()
            # A trial that raises past on_end (bad checkpoint, missing data) must leave
            # neither a waiting thread nor a run that looks alive forever.
            weakref.finalize(self, self._sender.abandon)
        self._sender.put(OpenRuns(
            experiment_name=self.experiment_name, submission=submission, study=study,
            ruleset=config.ruleset, trial_dir=str(trial_dir),
            run_name=store.trial_run_name(config.workload, config.trial_index),
            tags=tags, params=dict(config.hyperparameters or {}),
            resumed=bool(meta.get("preemption_count")) and meta.get("resumed_from_step") is not None,
        ))
        self._wait_sent(6 * self.sync_wait_s)

    def on_eval(self, global_step: int, row: dict[str, float]) -> None:
        self._evals.append((global_step, store.finite_or_none(row.get("accumulated_submission_time"))))
        if self._sender is not None:
            self._sender.put(SendMetrics(store.make_metrics(row, global_step, store.now_ms())))

    def on_submission_metrics(self, rows: list[tuple[int, str, float]]) -> None:
        if self._sender is None:
            return
        if rows:
            from mlflow.entities import Metric

            ts = store.now_ms()
            self._sender.put(SendMetrics([Metric(store.metric_key(n), float(v), ts, int(s)) for s, n, v in rows]))
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
        files = artifacts.trial_files(self._trial_dir) + artifacts.submission_files(self._submission_path)
        sender.put(CloseRun(
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
        barrier = Barrier()
        sender.put(barrier)
        deadline = time.monotonic() + timeout
        while not barrier.event.wait(0.05):
            if sender.failing or time.monotonic() > deadline:
                return

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is sent (or dropped); False on timeout."""
        if self._sender is None or not self._sender.is_alive():
            return True
        barrier = Barrier()
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
