"""Run a campaign's trials as Ray tasks on one kind of hardware, with retries and resume.

Hardware specs (``--hardware``) and what each trial asks Ray for::

    cpu:N                 N CPU cores, no accelerator      num_cpus=N, JAX_PLATFORMS=cpu
    NxTYPE                N accelerators of Ray type TYPE  num_gpus=N, accelerator_type=TYPE
                          (H100, A100, L4, ...; TPU-V5P...) (TPUs: resources={"TPU": N})
    NxTYPE+cpu:C          the same with C CPU cores        num_cpus=C (default 1 per accelerator)
    NxGPU                 N GPUs of any type               num_gpus=N
    SPEC@LABEL            only on nodes that advertise the custom resource LABEL
                          (``ray start --resources='{"LABEL": 1000}'``); asks for 0.001 of it

Fidelity rules:

* Two trials never share a device or its cores. Ray gives each GPU trial its own GPUs
  (CUDA_VISIBLE_DEVICES). A ``cpu:N`` trial also pins its process to N cores of its
  own (``sched_setaffinity``; the cores are claimed with lock files that the kernel frees
  when the process dies), so XLA sizes its thread pool to N and neighbours cannot steal
  them. Ray's accounting (num_cpus) guarantees that enough cores are free.
* Every trial runs in a fresh worker process (``max_calls=1``), like AlgoPerf's one
  process per trial: JAX starts and compiles from scratch each time, and no cache of
  one trial speeds up the next. For the same reason the JAX persistent compilation cache
  is switched off in trial processes (``JAX_ENABLE_COMPILATION_CACHE=false``):
  compilation is part of a submission's time, and a cache shared between trials would
  charge it to whichever trial ran first.
* All trials of a campaign must run on the same kind of hardware. The first trial that
  starts fixes the campaign's kind (its hardware label and, for CPUs, the CPU model, as
  recorded in ``meta_data_<p>.json``; earlier runs of the same campaign count too); a
  trial that lands on another kind is refused before it trains (it is left unrun, so
  the same command runs it later) unless ``allow_mixed_hardware``.

Faults: a trial whose worker process or node dies is retried by Ray (``max_retries``)
and resumes from its last checkpoint (``algoperf.checkpoint``). An exception in
submission code is not retried: ``run_trial`` records the trial as failed with its
traceback and the campaign goes on. Trials whose folder holds trial_result.json are not
run again, so re-running a campaign after its driver was killed resumes it.

The driver must start Ray before it imports JAX: this module imports neither JAX nor
anything that does at import time (``connect`` first, then plan the campaign).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from algoperf.trial import TrialConfig, TrialObserver

ObserverFactory = Callable[["TrialConfig"], "TrialObserver | None"]

# A label is requested as this fraction of its custom resource: any number of trials
# may share a label; cores and devices are what limits them.
LABEL_REQUEST = 0.001
EMBEDDED_OBJECT_STORE_BYTES = 256 * 1024**2  # trials pass only small dicts through Ray
TPU_PREFIX = "TPU"
ANY_GPU = "GPU"  # NxGPU: GPUs of any type (the campaign's kind check still keeps them alike)


class SchedulerError(Exception):
    """A campaign that cannot be scheduled; the message says why and what to do."""


class CampaignInterrupted(SchedulerError):
    """The driver was interrupted (Ctrl-C); the campaign resumes when run again."""


class HardwareSpecError(SchedulerError, ValueError):
    """A --hardware string that does not parse."""


# --- hardware specs -------------------------------------------------------------------
_SPEC = re.compile(
    r"^(?:cpu:(?P<cpus>\d+)|(?P<count>\d+)x(?P<type>[A-Za-z][A-Za-z0-9_.-]*)(?:\+cpu:(?P<host_cpus>\d+))?)"
    r"(?:@(?P<label>[A-Za-z0-9_.:/-]+))?$"
)
_SPEC_HELP = (
    "expected cpu:N (N cores, e.g. cpu:2) or NxTYPE (N accelerators of a Ray accelerator type, "
    "e.g. 1xH100, 8xA100), optionally +cpu:C (host cores of an accelerator trial) and @LABEL "
    "(a custom resource that the nodes of this kind advertise)"
)


@dataclass(frozen=True)
class HardwareSpec:
    """The hardware one trial runs on; ``str()`` gives the spec string back."""

    cpus: int
    accelerators: int = 0
    accelerator_type: str | None = None
    label: str | None = None

    @property
    def is_cpu(self) -> bool:
        return self.accelerators == 0

    @property
    def is_tpu(self) -> bool:
        return bool(self.accelerator_type) and self.accelerator_type.upper().startswith(TPU_PREFIX)

    def __str__(self) -> str:
        if self.is_cpu:
            text = f"cpu:{self.cpus}"
        else:
            text = f"{self.accelerators}x{self.accelerator_type or ANY_GPU}"
            if self.cpus != self.accelerators:
                text += f"+cpu:{self.cpus}"
        return text + (f"@{self.label}" if self.label else "")

    def requirement(self) -> dict[str, float]:
        """The Ray resources one trial needs on a single node."""
        need: dict[str, float] = {"CPU": float(self.cpus)}
        if self.accelerators:
            need["TPU" if self.is_tpu else "GPU"] = float(self.accelerators)
            if self.accelerator_type:
                need[f"accelerator_type:{self.accelerator_type}"] = LABEL_REQUEST
        if self.label:
            need[self.label] = LABEL_REQUEST
        return need

    def env_vars(self) -> dict[str, str]:
        """The JAX/XLA environment of a trial process (set by Ray's runtime_env)."""
        threads = str(self.cpus)
        env = {
            # Compilation is charged to the submission: no cache shared between trials.
            "JAX_ENABLE_COMPILATION_CACHE": "false",
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
            "ALGOPERF_HARDWARE": str(self),
        }
        if self.is_cpu:
            # Ray no longer hides GPUs from tasks that ask for none: keep JAX off them.
            env["JAX_PLATFORMS"] = "cpu"
        else:
            # The trial owns whole devices: take the memory up front, as AlgoPerf runs do.
            env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "true"
        return env

    def ray_options(self) -> dict[str, Any]:
        """Options for ``RemoteFunction.options`` that place one trial."""
        resources: dict[str, float] = {}
        options: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": 0}
        if self.accelerators:
            if self.is_tpu:
                resources["TPU"] = float(self.accelerators)
            else:
                options["num_gpus"] = self.accelerators
            if self.accelerator_type:
                options["accelerator_type"] = self.accelerator_type
        if self.label:
            resources[self.label] = LABEL_REQUEST
        if resources:
            options["resources"] = resources
        options["runtime_env"] = {"env_vars": self.env_vars()}
        return options

    def mismatch(self, hw: dict[str, Any], pinned: list[int] | None) -> str | None:
        """Why the hardware a trial process got (``hardware.describe()``) is not this spec."""
        if self.is_cpu:
            if hw["platform"] != "cpu":
                return f"a {self} trial sees JAX platform {hw['platform']!r}, not cpu"
            if pinned is None or len(pinned) != self.cpus:
                return (
                    f"a {self} trial could not reserve {self.cpus} cores of its own on {hw['hostname']} "
                    "(another process holds them, or the node advertises more CPUs to Ray than it has)"
                )
            return None
        platform = "tpu" if self.is_tpu else "gpu"
        if hw["platform"] != platform or hw["device_count"] != self.accelerators:
            return (
                f"a {self} trial sees {hw['device_count']} {hw['platform']} device(s) ({hw['device_kind']}) on "
                f"{hw['hostname']}, not {self.accelerators} {platform}(s): install JAX with "
                f"{'TPU' if self.is_tpu else 'CUDA'} support on the workers (e.g. pip install 'jax[cuda12]')"
            )
        return None


def parse_hardware(text: str) -> HardwareSpec:
    """Parse a --hardware string (see the module docstring) into a HardwareSpec."""
    match = _SPEC.match(text.strip())
    if not match:
        raise HardwareSpecError(f"--hardware {text!r}: {_SPEC_HELP}")
    label = match["label"]
    if match["cpus"] is not None:
        cpus = int(match["cpus"])
        if cpus < 1:
            raise HardwareSpecError(f"--hardware {text!r}: a trial needs at least one core (cpu:1 or more)")
        return HardwareSpec(cpus=cpus, label=label)
    count = int(match["count"])
    if match["type"].lower() == "cpu":
        raise HardwareSpecError(f"--hardware {text!r}: CPU trials are written cpu:N (N cores)")
    if count < 1:
        raise HardwareSpecError(
            f"--hardware {text!r}: a trial needs at least one whole accelerator (two trials never share one)"
        )
    host = int(match["host_cpus"]) if match["host_cpus"] is not None else count
    if host < 1:
        raise HardwareSpecError(f"--hardware {text!r}: +cpu:C needs C >= 1")
    kind = None if match["type"].upper() == ANY_GPU else match["type"]
    return HardwareSpec(cpus=host, accelerators=count, accelerator_type=kind, label=label)


# --- connecting -------------------------------------------------------------------------
def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at ``address`` (or RAY_ADDRESS), or start an embedded one.

    The embedded instance is sized to this machine (``num_cpus`` = the cores this
    process may use; Ray finds GPUs itself), without dashboard, with worker output kept
    in Ray's log folder (``/tmp/ray/session_latest/logs``) so the progress view stays
    readable. Returns True when this call started Ray (the caller shuts it down).
    Call it before anything imports JAX.
    """
    import ray

    from algoperf import hardware

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address:
            ray.init(address=address, **quiet)
            return True
        ray.init(
            address="local",
            num_cpus=num_cpus or hardware.usable_cpus(),
            include_dashboard=False,
            object_store_memory=EMBEDDED_OBJECT_STORE_BYTES,
            **quiet,
        )
    except ConnectionError as e:
        raise SchedulerError(
            f"cannot reach a Ray cluster at {address!r} ({e}); start one with `ray start --head` "
            "(see docs/cluster.md) or leave out --address to run on an embedded Ray"
        ) from e
    return True


def _alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


_STANDARD = ("CPU", "GPU", "TPU", "memory", "object_store_memory")


def describe_node(resources: dict[str, float]) -> str:
    """A node's hardware in spec words: 'cpu:8', '4xH100+cpu:64', with its labels."""
    types = [k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:")]
    accel = int(resources.get("GPU", 0) or resources.get("TPU", 0))
    text = f"{accel}x{types[0] if types else 'GPU'}+cpu:{int(resources.get('CPU', 0))}" if accel else f"cpu:{int(resources.get('CPU', 0))}"
    labels = sorted(k for k in resources if k not in _STANDARD and not k.startswith(("node:", "accelerator_type:")))
    return text + "".join(f"@{label}" for label in labels)


def default_hardware() -> HardwareSpec:
    """One trial per whole node's CPUs, or per GPU, when every node is the same kind."""
    nodes = [n["Resources"] for n in _alive_nodes() if n["Resources"].get("CPU", 0) >= 1]
    kinds = {describe_node({k: v for k, v in r.items() if k in ("CPU", "GPU", "TPU") or k.startswith("accelerator_type:")}) for r in nodes}
    if len(kinds) != 1:
        raise SchedulerError(
            "name the hardware every trial runs on with --hardware (e.g. cpu:4, 1xH100); "
            f"this cluster's nodes are {', '.join(sorted(kinds)) or 'none with CPUs'}"
        )
    resources = nodes[0]
    types = [k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:")]
    if resources.get("GPU", 0) >= 1 and types:
        return HardwareSpec(cpus=1, accelerators=1, accelerator_type=types[0])
    return HardwareSpec(cpus=int(resources["CPU"]))


def check_feasible(spec: HardwareSpec) -> None:
    """Raise SchedulerError unless some alive node can run a trial of ``spec``.

    Without this, Ray would keep an infeasible task pending forever.
    """
    need = spec.requirement()
    nodes = _alive_nodes()
    if any(all(n["Resources"].get(k, 0.0) >= v for k, v in need.items()) for n in nodes):
        return
    have = ", ".join(sorted({describe_node(n["Resources"]) for n in nodes})) or "no alive node"
    raise SchedulerError(
        f"no node of the Ray cluster can run a {spec} trial (it needs "
        f"{', '.join(f'{k}={v:g}' for k, v in need.items())}); the nodes are: {have}. "
        "Pick --hardware from those, or start workers of that kind (docs/cluster.md)"
    )


# --- progress -------------------------------------------------------------------------
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


class _Fanout:
    """Several observers as one."""

    def __init__(self, observers: list[Any]):
        self.observers = [o for o in observers if o is not None]

    def attach_progress(self, read: Callable[[], dict[str, Any]]) -> None:
        for o in self.observers:
            if hasattr(o, "attach_progress"):
                o.attach_progress(read)

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


# --- the trial process ------------------------------------------------------------------
_HELD_CORE_LOCKS: list[Any] = []  # open for the life of the (one-trial) worker process


def _core_lock_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"algoperf-cpu-locks-{os.getuid()}"
    path.mkdir(exist_ok=True)
    return path


def pin_cores(n: int, wait_s: float = 300.0, on_wait: Callable[[], None] | None = None) -> list[int] | None:
    """Claim ``n`` cores no other trial process holds and pin this process to them.

    Each core is claimed by an exclusive ``flock`` on a per-core lock file; the kernel
    drops the lock when the process exits or is killed, so a dead trial never keeps its
    cores. The locks are per machine, so trials of two Ray instances on one machine do
    not share cores either. Returns the cores, or None if ``n`` free ones did not appear
    within ``wait_s`` (a trial that just ended may still be exiting, or another Ray
    instance's trial holds them: ``on_wait`` is called once when waiting starts).
    """
    allowed = sorted(os.sched_getaffinity(0))
    if n > len(allowed):
        return None
    lock_dir = _core_lock_dir()
    deadline = time.monotonic() + wait_s
    while True:
        held: list[tuple[int, Any]] = []
        for core in allowed:
            handle = (lock_dir / f"cpu{core}.lock").open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            held.append((core, handle))
            if len(held) == n:
                break
        if len(held) == n:
            cores = [core for core, _ in held]
            os.sched_setaffinity(0, cores)
            _HELD_CORE_LOCKS.extend(handle for _, handle in held)
            return cores
        for _, handle in held:
            handle.close()
        if time.monotonic() > deadline:
            return None
        if on_wait is not None:
            on_wait()
            on_wait = None
        time.sleep(0.2)


@contextlib.contextmanager
def _trial_lock(trial_dir: Path, on_wait: Callable[[], None]) -> Iterator[None]:
    """One attempt of a trial at a time (an orphan of a killed driver may still run)."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    with (trial_dir / ".algoperf.lock").open("a") as handle:
        waited = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if not waited:
                    on_wait()
                    waited = True
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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

    from algoperf.trial import TrialConfig

    spec = parse_hardware(spec_text)
    config = TrialConfig(**fields)
    key = trial_key(config)
    reporter = ProgressReporter(board, key)
    # Before JAX makes its threads (importing JAX makes none; its first use does).
    pinned = pin_cores(spec.cpus, on_wait=lambda: reporter._send(state="waiting for cores")) if spec.is_cpu else None

    from algoperf import hardware
    from algoperf.campaign import hardware_kind
    from algoperf.checkpoint import CheckpointError
    from algoperf.registry import UnknownNameError
    from algoperf.spec import DataNotFoundError
    from algoperf.submission import SubmissionError
    from algoperf.trial import run_trial
    from algoperf.trial_log import TrialLog

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
    with _trial_lock(config.path, lambda: reporter._send(state="waiting for an earlier attempt")):
        done = TrialLog(config.path).read_result() if config.path.exists() else None
        if done is not None:
            return {"outcome": "skipped", "result": done, "hardware_kind": kind}
        user_observer, warning = None, None
        if observer_factory is not None:
            try:
                user_observer = observer_factory(config)
            except Exception as e:  # noqa: BLE001 - a tracker that fails must not lose the trial
                warning = f"observer factory failed, trial runs without it: {type(e).__name__}: {e}"
        try:
            result = run_trial(config, _Fanout([reporter, user_observer]), extra_meta=extra_meta)
        except (SubmissionError, DataNotFoundError, CheckpointError, UnknownNameError) as e:
            reporter._send(state="error", error=str(e))
            return {"outcome": "error", "error": str(e), "hardware_kind": kind}
        finally:
            reporter.stop()
    return {"outcome": "finished", "result": result.to_dict(), "hardware_kind": kind, "warning": warning}


# --- the driver -----------------------------------------------------------------------
FINAL_STATES = ("finished", "skipped", "error", "refused", "lost")


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


def _trial_label(config: TrialConfig, several_experiments: bool) -> str:
    parts = [config.workload]
    if config.study_index is not None:
        parts.append(f"study {config.study_index}")
    parts.append(f"trial {config.trial_index}")
    label = " ".join(parts)
    return f"{config.experiment_name}/{label}" if several_experiments else label


def _render(rows: list[dict[str, Any]], title: str, warning: str | None = None) -> Group:
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


def _run(configs, hardware, allow_mixed, max_retries, observer_factory, console, live, poll_s) -> list[TrialOutcome]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from algoperf import registry, spec
    from algoperf.campaign import finished_result, recorded_hardware_kinds

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
    several = len({(c.experiment_dir, c.experiment_name) for c in configs}) > 1
    outcomes: list[TrialOutcome | None] = [None] * len(configs)
    rows: dict[str, dict[str, Any]] = {}
    pending: dict[Any, int] = {}
    for i, config in enumerate(configs):
        key = trial_key(config)
        info = registry.workload_info(config.workload)
        target_key = f"validation/{info['target_metric_name']}"
        rows[key] = {
            "label": _trial_label(config, several), "state": "queued", "target_key": target_key,
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
        return _render(list(rows.values()), title, feasibility["warning"])

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
    if path is None or not Path(path).is_file():
        return None
    file = Path(path).resolve()
    name = file.parent.name
    return name if name in registry.submission_names() and registry.resolve_submission(name) == file else None


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


EXECUTORS = ("auto", "local", "ray")


def choose_executor(executor: str, *, address: str | None, hardware: str | None, num_trials: int) -> str:
    """'local' or 'ray' for ``algoperf run --executor``.

    auto: Ray when a cluster (--address or RAY_ADDRESS) or a --hardware spec is named, or
    the campaign has more than one trial (fresh process per trial, retries, resume, and
    trials side by side when the hardware allows); in-process for a single trial, the
    fastest path (no Ray start-up).
    """
    if executor not in EXECUTORS:
        raise SchedulerError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if hardware:
        parse_hardware(hardware)  # a typo fails now, not after Ray has started
    if executor != "auto":
        if executor == "local" and (address or hardware):
            raise SchedulerError("--address and --hardware need --executor ray (or auto); local runs in this process")
        return executor
    if address or os.environ.get("RAY_ADDRESS") or hardware or num_trials > 1:
        return "ray"
    return "local"
