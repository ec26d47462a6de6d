"""Run a campaign's trials as Ray tasks on one kind of hardware, with retries and resume.

Hardware specs (``--hardware``): ``algoperf.hardware``. Fidelity rules:

* Two trials never share a device or its cores. Ray gives each GPU trial its own GPUs
  (CUDA_VISIBLE_DEVICES). A ``cpu:N`` trial also pins its process to N cores of its
  own (``sched_setaffinity``; the cores are claimed with lock files that the kernel frees
  when the process dies), so XLA sizes its thread pool to N and neighbours cannot steal
  them. Ray's accounting (num_cpus) guarantees that enough cores are free.
* Every trial runs in a fresh worker process (``max_calls=1``), like AlgoPerf's one
  process per trial; no cache of one trial speeds up the next, by the runner's rule for
  every executor (``algoperf.runner.device.cold_start``; the environment also sets
  ``JAX_ENABLE_COMPILATION_CACHE=false``): compilation is part of a submission's time.
* All trials of a campaign must run on the same kind of hardware. The first trial that
  starts fixes the campaign's kind (its hardware label and, for CPUs, the CPU model, as
  recorded in ``meta_data_<p>.json``; earlier runs of the same campaign count too); a
  trial that lands on another kind is refused before it trains (it is left unrun, so
  the same command runs it later) unless ``allow_mixed_hardware``.

Faults: a trial whose worker process or node dies is retried by Ray (``max_retries``)
and resumes from its last checkpoint (``algoperf.runner.checkpoint``). An exception in
submission code is not retried: ``run_trial`` records the trial as failed with its
traceback and the campaign goes on. Trials whose folder holds trial_result.json are not
run again, so re-running a campaign after its driver was killed resumes it.

The driver must start Ray before it imports JAX: this module imports neither JAX nor
anything that does at import time (``connect`` first, then plan the campaign).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live

from algoperf.campaign.cluster import (
    CampaignInterrupted,
    SchedulerError,
    check_feasible,
    connect,
    default_hardware,
)
from algoperf.campaign.pinning import pin_cores, trial_lock
from algoperf.campaign.progress import (
    ProgressBoard,
    ProgressReporter,
    render,
    trial_label,
)
from algoperf.hardware import HardwareSpec, parse_hardware
from algoperf.runner.observers import combine_observers

if TYPE_CHECKING:
    from algoperf.runner.observers import TrialObserver
    from algoperf.runner.types import TrialConfig

ObserverFactory = Callable[["TrialConfig"], "TrialObserver | None"]


def trial_key(config: TrialConfig) -> str:
    """How the driver and the trial's process name a trial (its folder, absolute)."""
    return str(Path(config.path).expanduser().resolve())


def _wait_holding_resources(ref: Any) -> Any:
    """The value of ``ref``, waited for without lending this task's cores to another task.

    A task blocked in ``ray.get`` (or ``ray.wait``) hands its CPUs back to Ray until the
    call returns, so Ray starts the next queued trial on them: a process that then
    competes with the running trials while it starts and imports, waits for a core in
    ``pin_cores``, and is refused once that wait passes its limit (trials longer than
    that). Waiting on the ref's future does not tell Ray the task is blocked.
    """
    return ref.future().result()


def _run_trial_task(
    fields: dict[str, Any], spec_text: str, board: Any, observer_factory: ObserverFactory | None
) -> dict[str, Any]:
    """One trial in a fresh Ray worker process: pin, check the hardware, run, report."""
    import ray

    from algoperf.runner.types import TrialConfig

    spec = parse_hardware(spec_text)
    config = TrialConfig(**fields)
    key = trial_key(config)
    reporter = ProgressReporter(board, key)
    # Before JAX makes its threads (importing JAX makes none; its first use does).
    pinned = pin_cores(spec.cpus, on_wait=lambda: reporter._send(state="waiting for cores")) if spec.is_cpu else None

    from algoperf import hardware
    from algoperf.hardware import hardware_kind
    from algoperf.registry import UnknownNameError
    from algoperf.runner.checkpoint import CheckpointError
    from algoperf.runner.trial import run_trial
    from algoperf.runner.trial_log import TrialWriter
    from algoperf.spec import DataNotFoundError
    from algoperf.submission.loading import SubmissionError

    hw = hardware.describe()
    kind = hardware_kind(hw)
    problem = spec.mismatch(hw, pinned) or _wait_holding_resources(board.claim.remote(key, kind))
    if problem:
        reporter._send(state="refused", error=problem)
        return {"outcome": "refused", "error": problem, "hardware_kind": kind}
    ctx = ray.get_runtime_context()
    extra_meta = {
        "scheduler": {
            "executor": "ray",
            "hardware_spec": str(spec),
            "hardware_kind": kind,
            "node_id": ctx.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "pinned_cpus": pinned,
            "ray_resources": ctx.get_assigned_resources(),
            "accelerator_ids": {k: list(v) for k, v in ctx.get_accelerator_ids().items() if v},
        }
    }
    with trial_lock(config.path, lambda: reporter._send(state="waiting for an earlier attempt")):
        done = TrialWriter(config.path).read_result() if config.path.exists() else None
        if done is not None:
            return {"outcome": "skipped", "result": done, "hardware_kind": kind}
        user_observer, warning = None, None
        if observer_factory is not None:
            try:
                user_observer = observer_factory(config)
            except Exception as e:  # noqa: BLE001 - a tracker that fails must not lose the trial
                warning = f"observer factory failed, trial runs without it: {type(e).__name__}: {e}"
        try:
            result = run_trial(config, combine_observers(reporter, user_observer), extra_meta=extra_meta)
        except (SubmissionError, DataNotFoundError, CheckpointError, UnknownNameError) as e:
            reporter._send(state="error", error=str(e))
            return {"outcome": "error", "error": str(e), "hardware_kind": kind}
        finally:
            reporter.stop()
    return {"outcome": "finished", "result": result.to_dict(), "hardware_kind": kind, "warning": warning}



# --- the driver -----------------------------------------------------------------------


@dataclass
class TrialOutcome:
    """What became of one trial of a campaign.

    ``state``: finished (ran to its end now; ``result`` holds TrialResult.to_dict(), whose
    status may be 'failed'), skipped (had finished before), error (setup problem, not
    run), refused (wrong kind of hardware, not run), lost (its process died more often
    than ``max_retries``; rerun the command to resume it).
    """

    config: TrialConfig
    state: str
    result: dict[str, Any] | None = None
    error: str | None = None

    def row(self) -> dict[str, Any]:
        """A row for result tables: the trial result, or a stand-in naming the state."""
        if self.result is not None:
            return dict(self.result)
        return {
            "workload": self.config.workload, "status": self.state, "error": self.error,
            "global_step": 0, "accumulated_submission_time": 0.0, "time_to_result": None,
            "best_validation": None, "trial_dir": str(self.config.path),
        }


def run_campaign(
    configs: list[TrialConfig],
    *,
    hardware: HardwareSpec | str | None = None,
    address: str | None = None,
    allow_mixed_hardware: bool = False,
    max_retries: int = 3,
    observer_factory: ObserverFactory | None = None,
    console: Console | None = None,
    live: bool | None = None,
    poll_s: float = 0.5,
) -> list[TrialOutcome]:
    """Run ``configs`` as Ray tasks on ``hardware``; one TrialOutcome per config, in order.

    Starts an embedded Ray (or joins ``address``/RAY_ADDRESS) unless Ray is already
    initialised; shuts down only what it started. ``observer_factory(config)`` is called
    inside each trial's process (it must pickle), e.g. ``TrackerFactory(...).observer_for``.
    ``live``: a rich Live view (default: when ``console`` is a terminal; else one line
    per trial event).
    """
    import ray

    started = connect(address)
    try:
        return _run(configs, hardware, allow_mixed_hardware, max_retries, observer_factory,
                    console or Console(stderr=True), live, poll_s)
    finally:
        if started:
            ray.shutdown()


def _campaign_checks(configs, hardware, allow_mixed, max_retries, observer_factory) -> tuple[HardwareSpec, set[str]]:
    """(hardware spec, kinds the trials already ran on); SchedulerError for what cannot run."""
    import ray

    from algoperf.campaign.plan import recorded_hardware_kinds

    if max_retries < 0:
        raise SchedulerError(f"--max-retries {max_retries}: give 0 or more")
    hw_spec = hardware if isinstance(hardware, HardwareSpec) else (parse_hardware(hardware) if hardware else default_hardware())
    check_feasible(hw_spec)
    kinds = recorded_hardware_kinds(configs)
    if len(kinds) > 1 and not allow_mixed:
        raise SchedulerError(
            f"this campaign's trials already ran on several kinds of hardware ({'; '.join(sorted(kinds))}); "
            "pass --allow-mixed-hardware to go on mixing them"
        )
    if observer_factory is not None:
        try:
            ray.cloudpickle.dumps(observer_factory)
        except Exception as e:  # noqa: BLE001 - any pickling failure means the same to the user
            raise SchedulerError(
                f"the trial observer factory {observer_factory!r} cannot be sent to Ray workers "
                f"({type(e).__name__}: {e}); make it a picklable callable (e.g. a dataclass method)"
            ) from e
    return hw_spec, kinds


def _submit(configs, hw_spec, board, task, task_options, observer_factory, outcomes) -> tuple[dict[str, dict[str, Any]], dict[Any, int]]:
    """Queue each unfinished trial (finished ones go to ``outcomes``); (rows by key, pending)."""
    from algoperf import registry, spec
    from algoperf.campaign.plan import finished_result

    several = len({(c.experiment_dir, c.experiment_name) for c in configs}) > 1
    rows: dict[str, dict[str, Any]] = {}
    pending: dict[Any, int] = {}
    for i, config in enumerate(configs):
        key = trial_key(config)
        info = registry.workload_info(config.workload)
        target_key = f"validation/{info['target_metric_name']}"
        rows[key] = {
            "label": trial_label(config, several), "state": "queued", "target_key": target_key,
            "target": info["validation_target_value"], "higher_is_better": spec.higher_is_better(target_key),
            "budget": info["max_allowed_runtime_sec"] * config.budget_factor,
        }
        done = finished_result(config)
        if done is not None:
            outcomes[i] = TrialOutcome(config, "skipped", done)
            rows[key].update(state="skipped", status=done.get("status"), global_step=done.get("global_step"))
            continue
        board.report.remote(key, {k: rows[key][k] for k in ("target_key", "higher_is_better", "budget")})
        fields = _portable_fields(config)
        ref = task.options(**task_options, name=f"trial {rows[key]['label']}").remote(
            fields, str(hw_spec), board, observer_factory
        )
        pending[ref] = i
    return rows, pending


def _run(configs, hardware, allow_mixed, max_retries, observer_factory, console, live, poll_s) -> list[TrialOutcome]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    hw_spec, kinds = _campaign_checks(configs, hardware, allow_mixed, max_retries, observer_factory)
    # On the driver's own node, strictly: with soft affinity Ray 2.60 places a num_cpus=0
    # actor on a worker when the driver's node offers no CPU (a head started with
    # --num-cpus=0), and the board then dies with that worker, failing the retried trial.
    board = (
        ray.remote(ProgressBoard)
        .options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False))
        .remote(next(iter(kinds), None), allow_mixed)
    )
    task = ray.remote(max_calls=1)(_run_trial_task)
    task_options = {**hw_spec.ray_options(), "max_retries": max_retries, "retry_exceptions": False}
    outcomes: list[TrialOutcome | None] = [None] * len(configs)
    rows, pending = _submit(configs, hw_spec, board, task, task_options, observer_factory, outcomes)

    title = f"{len(configs)} trials on {hw_spec}"
    use_live = console.is_terminal if live is None else live
    seen: dict[str, str] = {}

    collected: set[str] = set()
    feasibility = {"checked_at": time.monotonic(), "warning": None}

    def refresh() -> Group:
        with contextlib.suppress(Exception):
            for key, entry in ray.get(board.snapshot.remote(), timeout=10).items():
                if key in rows and key not in collected:
                    rows[key].update(entry)
        if time.monotonic() - feasibility["checked_at"] > 15:
            # Nodes of the campaign's kind may all have died: Ray then waits for one to join.
            feasibility["checked_at"] = time.monotonic()
            try:
                check_feasible(hw_spec)
                warning = None
            except SchedulerError as e:
                warning = f"{e} -- waiting for such a node to join (Ctrl-C stops; run the command again to resume)"
            if warning != feasibility["warning"] and warning and not use_live:
                console.print(f"[bold red]{warning}[/]", highlight=False, soft_wrap=True)
            feasibility["warning"] = warning
        if not use_live:
            for key, row in rows.items():
                state = row["state"]
                if seen.get(key) != state:
                    seen[key] = state
                    if state != "queued":
                        console.print(f"{row['label']}: {state}" + (f" ({row['error']})" if row.get("error") else ""),
                                      highlight=False, soft_wrap=True)
        return render(list(rows.values()), title, feasibility["warning"])

    try:
        _wait(pending, configs, outcomes, rows, collected, refresh, console, use_live, poll_s)
    except KeyboardInterrupt:
        left = sum(o is None for o in outcomes)
        raise CampaignInterrupted(
            f"interrupted with {left} trial(s) unfinished; run the same command again to resume them "
            "(finished trials are kept and not run again)"
        ) from None
    return [o for o in outcomes if o is not None]


def _wait(pending, configs, outcomes, rows, collected, refresh, console, use_live, poll_s) -> None:
    """Collect the trials as they end, refreshing the progress view."""
    import ray

    with Live(refresh(), console=console, refresh_per_second=4, transient=False) if use_live else contextlib.nullcontext() as view:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=poll_s)
            for ref in ready:
                i = pending.pop(ref)
                config = configs[i]
                outcomes[i] = _collect(ref, config)
                collected.add(trial_key(config))
                row = rows[trial_key(config)]
                outcome = outcomes[i]
                row["state"] = "failed" if outcome.result and outcome.result.get("status") == "failed" else outcome.state
                if outcome.result:
                    row.update(global_step=outcome.result.get("global_step"),
                               submission_time=outcome.result.get("accumulated_submission_time"))
                    if outcome.result.get("best_validation") is not None:
                        row["best"] = outcome.result["best_validation"]
                if outcome.error:
                    row["error"] = outcome.error
            frame = refresh()
            if view is not None:
                view.update(frame)


def _portable_fields(config: TrialConfig) -> dict[str, Any]:
    """The config as plain fields, its paths absolute: a Ray worker runs in another folder.

    (On a cluster these paths must name the same shared folder on every node.)
    """
    from algoperf import registry

    fields = dataclasses.asdict(config)
    for name in ("experiment_dir", "data_dir", "submission"):
        value = fields.get(name)
        if value is not None and (name != "submission" or Path(value).exists()):
            fields[name] = str(Path(value).expanduser().resolve())
    # A built-in submission travels by name: each node finds it in its own installation
    # (a laptop's editable checkout and a container's site-packages differ in path).
    builtin = _builtin_name(fields.get("submission"), registry)
    if builtin is not None:
        fields["submission"] = builtin
    return fields


def _builtin_name(path: str | None, registry: Any) -> str | None:
    """A built-in's name (nested ones as ``leaderboard_v05/<name>``), None for any other path."""
    if path is None or not Path(path).is_file():
        return None
    name = registry.builtin_submission_name(path)
    return name if name is not None and registry.resolve_submission(name) == Path(path).resolve() else None


def _collect(ref: Any, config: TrialConfig) -> TrialOutcome:
    import ray

    try:
        value = ray.get(ref)
    except ray.exceptions.RayTaskError as e:  # a bug in the harness, not in the submission
        return TrialOutcome(config, "error", error=f"{type(e.cause).__name__}: {e.cause}")
    except ray.exceptions.RayError as e:  # the process or node died more than max_retries times
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return TrialOutcome(config, "lost", error=f"{type(e).__name__}: {first}; rerun the command to resume it")
    outcome = value["outcome"]
    if outcome in ("finished", "skipped"):
        return TrialOutcome(config, outcome, value["result"])
    return TrialOutcome(config, outcome, error=value["error"])
