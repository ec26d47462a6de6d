"""Logging cost: steps/s of a trial tracked to a real MLflow server against the same trial untracked.

    python benchmarks/bench_logging.py [--steps 4000] [--repeats 3]

A real ``mlflow server`` (SQLite store in a temporary folder, one uvicorn worker, a free
loopback port; ``algoperf.tracking.MlflowServer``) runs beside the trials, as in a campaign.
Each trial is mnist1d with the first point of the submission's search space, evals at the
workload's own period (every 5 s of submission time), a fixed number of steps and an
unreachable target so every run trains the same steps. Two submissions:

* ``nadamw``: per-step metrics (loss, grad norm) every 100 steps, the usual case;
* ``linear_decay``: two gradient norms EVERY step, the worst case (the workload's
  step_hint is set to the step count, so its schedule ends exactly at the last step).

Runs alternate (off, on, off, on, ...) so both see the same machine load. Steps/s come
from the charged submission time between the first and the last eval (as in
bench_overhead), which leaves out compilation. For each submission::

    logging_cost = median(steps/s, tracking off) / median(steps/s, tracking on) - 1

and, the headline, the median of the back-to-back (off, on) pair ratios with their range
(``logging_cost``, ``logging_cost_range``; the worse submission): machine drift cancels
within a pair. The trial runs on the first core this process may use and the server (all
its processes) on the others, so the server's work is not charged to the trial's core
(``server_shares_trial_core`` says when there was only one core to use). The server is
stopped when the benchmark ends, also on SIGTERM (goal <= 1%). On a busy machine runs of
the same kind spread by several percent (reported as run_to_run_spread, with the median of
back-to-back pair ratios): a cost below that spread is not resolved. The observer's callbacks
run outside the timed region; how long they take (untimed wall time per eval, at start and
at end) is reported beside it (an eval whose sends outlast the observer's sync_wait_s would
send on during the timed steps: tracker_max_s_per_eval shows how far from that they are), with the runner's own accumulated_logging_time per eval
(CSV, submission metrics, checkpoint) with tracking on and off. Each tracked run is
checked against the server (every per-step value must be there), so a figure from a
tracker that silently dropped its data cannot pass.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from algoperf import registry
from algoperf.runner.trial import run_trial
from algoperf.runner.trial_log import read_evals
from algoperf.runner.types import TrialConfig
from algoperf.tracking import MlflowServer, TrackerFactory
from algoperf.tracking.observer import DEFAULT_SYNC_WAIT_S
from algoperf.workloads.mnist1d.workload import Mnist1dWorkload

REPO = Path(__file__).resolve().parents[1]
SUBMISSIONS = ("nadamw", "linear_decay")
WORKLOAD = "mnist1d_logging_bench"
# Logged by each submission on every step it logs: how many values the server must hold.
PER_STEP_KEYS = {"nadamw": ("grad_norm",), "linear_decay": ("grad_norm_l2", "grad_norm_l1")}


def first_point(submission: str) -> dict[str, Any]:
    return json.loads((REPO / "submissions" / submission / "tuning_search_space.json").read_text())[0]


def bench_workload(steps: int) -> type[Mnist1dWorkload]:
    """mnist1d at its normal eval period, with an unreachable target and no budget stop."""

    class LoggingBenchMnist1d(Mnist1dWorkload):
        base_workload = "mnist1d"  # the submissions' mnist1d batch size, not the 'mnist' fallback
        validation_target_value = 2.0  # accuracy never reaches 2: the trial runs all its steps
        max_allowed_runtime_sec = 1e9
        step_hint = steps  # linear_decay stops (TrainingCompleteError) at step_hint

    return LoggingBenchMnist1d


class TimedObserver:
    """Forwards to an observer and adds up the wall time each callback took (all untimed)."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.seconds = {"on_start": 0.0, "per_eval": 0.0, "on_end": 0.0}
        self.evals: list[float] = []  # each eval's on_eval + on_submission_metrics

    def _timed(self, slot: str, fn: Any, *args: Any) -> float:
        begin = time.perf_counter()
        fn(*args)
        spent = time.perf_counter() - begin
        self.seconds[slot] += spent
        return spent

    def on_start(self, config: Any, meta: dict[str, Any]) -> None:
        self._timed("on_start", self.inner.on_start, config, meta)

    def on_eval(self, global_step: int, row: dict[str, float]) -> None:
        self.evals.append(self._timed("per_eval", self.inner.on_eval, global_step, row))

    def on_submission_metrics(self, rows: list[tuple[int, str, float]]) -> None:
        spent = self._timed("per_eval", self.inner.on_submission_metrics, rows)
        if self.evals:  # the runner calls it right after on_eval, for the same eval
            self.evals[-1] += spent

    def on_end(self, result: Any) -> None:
        self._timed("on_end", self.inner.on_end, result)

    def attach_progress(self, progress: Any) -> None:
        self.inner.attach_progress(progress)


def one_run(submission: str, steps: int, root: Path, name: str, server: MlflowServer | None) -> dict[str, Any]:
    """One trial; its steps/s between the first and last eval, and what logging cost untimed."""
    config = TrialConfig(workload=WORKLOAD, submission=submission, hyperparameters=first_point(submission),
                         experiment_dir=root, experiment_name=name, max_steps=steps)
    observer = None
    if server is not None:
        observer = TimedObserver(TrackerFactory(server.url, f"bench-logging-{name}").observer_for(config))
    result = run_trial(config, observer)
    if result.status == "failed":
        raise RuntimeError(f"{submission} trial failed: {result.error}")
    rows = read_evals(config.path)
    first, last = rows[0], rows[-1]
    out: dict[str, Any] = {
        "steps_per_s": (last["global_step"] - first["global_step"])
        / (last["accumulated_submission_time"] - first["accumulated_submission_time"]),
        "evals": result.num_evals,
        "batch_size": json.loads((config.path / "meta_data_0.json").read_text())["batch_size"],
        "runner_logging_s_per_eval": result.accumulated_logging_time / result.num_evals,
    }
    if observer is not None:
        out["tracker_s_per_eval"] = observer.seconds["per_eval"] / result.num_evals
        out["tracker_max_s_per_eval"] = max(observer.evals)
        out["tracker_start_s"] = observer.seconds["on_start"]
        out["tracker_end_s"] = observer.seconds["on_end"]
        out["values_on_server"] = check_server(server.url, observer.inner.run_id, submission, steps)
    return out


def check_server(url: str, run_id: str | None, submission: str, steps: int) -> int:
    """The per-step values the run holds on the server; raises if any is missing."""
    from mlflow import MlflowClient

    if run_id is None:
        raise RuntimeError("the tracked trial has no MLflow run: tracking failed")
    client = MlflowClient(url)
    every = 1 if submission == "linear_decay" else 100
    expected = len(range(0, steps, every))
    found = 0
    for key in PER_STEP_KEYS[submission]:
        history = client.get_metric_history(run_id, key)
        if len(history) != expected:
            raise RuntimeError(f"run {run_id} holds {len(history)} values of {key}, expected {expected}")
        found += len(history)
    return found


def _split_cores() -> tuple[set[int], set[int]]:
    """(the trial's core, the server's cores) out of the cores this process may use.

    The trial keeps the first; the server gets the others, so its work does not take the
    trial's core. With one core there is nothing to split: both share it.
    """
    allowed = sorted(os.sched_getaffinity(0))
    return {allowed[0]}, set(allowed[1:]) or {allowed[0]}


def _pin_group(pid: int, cores: set[int]) -> None:
    """Pin every process of the server's process group (mlflow, gunicorn/uvicorn workers)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pid:
                    os.sched_setaffinity(int(entry.name), cores)


def _stop_on_sigterm() -> None:
    """A SIGTERM (make interrupted, a timeout) ends the run through ``with`` blocks, so the
    server is stopped; only SIGKILL can leave it behind."""
    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def measure(steps: int = 4000, repeats: int = 3) -> dict[str, Any]:
    registry.register_workload(WORKLOAD, bench_workload(steps))
    out: dict[str, Any] = {"steps": steps, "repeats": repeats}
    _stop_on_sigterm()
    trial_cores, server_cores = _split_cores()
    out["trial_cores"], out["server_cores"] = sorted(trial_cores), sorted(server_cores)
    out["server_shares_trial_core"] = server_cores == trial_cores
    previous = os.sched_getaffinity(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = MlflowServer(f"sqlite:///{root / 'mlflow.db'}", artifacts_destination=root / "artifacts",
                              log_path=root / "server.log")
        begin = time.perf_counter()
        os.sched_setaffinity(0, server_cores)  # the server's processes inherit this
        try:
            server.start()
        finally:
            os.sched_setaffinity(0, previous)
        os.sched_setaffinity(0, trial_cores)
        with server:
            _pin_group(server.process.pid, server_cores)  # workers forked after start, too
            out["server_start_s"] = time.perf_counter() - begin
            for submission in SUBMISSIONS:
                runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
                for i in range(repeats):
                    runs["off"].append(one_run(submission, steps, root, f"{submission}-off-{i}", None))
                    runs["on"].append(one_run(submission, steps, root, f"{submission}-on-{i}", server))
                pairs = [a["steps_per_s"] / b["steps_per_s"] - 1.0 for a, b in zip(runs["off"], runs["on"], strict=True)]
                off = statistics.median(r["steps_per_s"] for r in runs["off"])
                on = statistics.median(r["steps_per_s"] for r in runs["on"])

                def med(mode: str, key: str, runs: dict = runs) -> float:
                    return statistics.median(r[key] for r in runs[mode])

                out[submission] = {
                    "logging_cost": off / on - 1.0,
                    # The same from each (off, on) pair run back to back, and how far runs
                    # of one kind spread: the resolution of the figure on this machine.
                    "paired_cost_median": statistics.median(pairs),
                    "paired_cost_range": [min(pairs), max(pairs)],
                    "run_to_run_spread": (max(r["steps_per_s"] for r in runs["off"])
                                          - min(r["steps_per_s"] for r in runs["off"])) / off,
                    "steps_per_s_off": [r["steps_per_s"] for r in runs["off"]],
                    "steps_per_s_on": [r["steps_per_s"] for r in runs["on"]],
                    "evals_per_run": runs["on"][0]["evals"],
                    "batch_size": runs["on"][0]["batch_size"],
                    "tracker_s_per_eval": med("on", "tracker_s_per_eval"),
                    # The observer waits up to sync_wait_s per eval for its sends; an eval
                    # that took that long would have sent on into the timed steps.
                    "tracker_max_s_per_eval": max(r["tracker_max_s_per_eval"] for r in runs["on"]),
                    "sync_wait_s": DEFAULT_SYNC_WAIT_S,
                    "tracker_start_s": med("on", "tracker_start_s"),
                    "tracker_end_s": med("on", "tracker_end_s"),
                    "runner_logging_s_per_eval_on": med("on", "runner_logging_s_per_eval"),
                    "runner_logging_s_per_eval_off": med("off", "runner_logging_s_per_eval"),
                    "values_on_server_per_run": runs["on"][0]["values_on_server"],
                }
    os.sched_setaffinity(0, previous)
    # The headline: the median of the (off, on) pair ratios run back to back (machine drift
    # cancels within a pair), the worse submission, with the pairs' range as its spread.
    worst = max(SUBMISSIONS, key=lambda name: out[name]["paired_cost_median"])
    out["logging_cost"] = out[worst]["paired_cost_median"]
    out["logging_cost_range"] = out[worst]["paired_cost_range"]
    out["logging_cost_ratio_of_medians"] = max(out[name]["logging_cost"] for name in SUBMISSIONS)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="Also write every figure (pairs, spreads, per-eval times) here.")
    args = parser.parse_args()
    out = measure(args.steps, args.repeats)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    parts = [
        f"{s} {out[s]['logging_cost']:+.2%} (off runs spread {out[s]['run_to_run_spread']:.0%}; "
        f"untimed {out[s]['tracker_s_per_eval'] * 1e3:.0f} ms/eval, "
        f"{out[s]['values_on_server_per_run']} per-step values)"
        for s in SUBMISSIONS
    ]
    print(f"logging cost: {out['logging_cost']:+.2%}; " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
