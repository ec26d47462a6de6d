"""The Ray cluster a campaign runs on: connect (or start an embedded one), what its nodes
are, whether a trial's hardware fits, and which executor a command uses.

The driver must start Ray before it imports JAX: this module imports neither.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from algoperf import hardware
from algoperf.hardware import HardwareSpec, parse_hardware

EMBEDDED_OBJECT_STORE_BYTES = 256 * 1024**2  # trials pass only small dicts through Ray
WORKER_NICENESS = "RAY_worker_niceness"  # Ray's setting (default 15), read from the environment


class SchedulerError(Exception):
    """A campaign that cannot be scheduled; the message says why and what to do."""


class CampaignInterrupted(SchedulerError):
    """The driver was interrupted (Ctrl-C); the campaign resumes when run again."""


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at ``address`` (or RAY_ADDRESS), or start an embedded one.

    The embedded instance is sized to this machine (``num_cpus`` = the cores this
    process may use; Ray finds GPUs itself), without dashboard, with worker output kept
    in Ray's log folder (``/tmp/ray/session_latest/logs``) so the progress view stays
    readable. Returns True when this call started Ray (the caller shuts it down).
    Call it before anything imports JAX.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address:
            ray.init(address=address, **quiet)
            return True
        # Ray starts its workers at nice 15: any other process on the machine would then take
        # nearly all of a trial's core (measured: a 20 s test trial took 219 s beside a busy
        # loop). A trial is a measurement: it competes as an equal, at nice 0.
        os.environ.setdefault(WORKER_NICENESS, "0")
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

