"""The one hardware model: what a machine is, what a trial asks for, and kinds compared.

* describe: ``describe()`` (processor, accelerators), ``hardware_label``, ``versions()``,
  ``git_commit``.
* parse: ``parse_hardware(--hardware)`` -> ``HardwareSpec``, and what one trial of it
  needs from Ray (resources, options, its process's environment)::

    cpu:N                 N CPU cores, no accelerator      num_cpus=N, JAX_PLATFORMS=cpu
    NxTYPE                N accelerators of Ray type TYPE  num_gpus=N, accelerator_type=TYPE
                          (H100, A100, L4, ...; TPU-V5P...) (TPUs: resources={"TPU": N})
    NxTYPE+cpu:C          the same with C CPU cores        num_cpus=C (default 1 per accelerator)
    NxGPU                 N GPUs of any type               num_gpus=N
    SPEC@LABEL            only on nodes that advertise the custom resource LABEL
                          (``ray start --resources='{"LABEL": 1000}'``); asks for 0.001 of it

* compare: ``hardware_kind`` (what a campaign's trials must share) and
  ``HardwareSpec.mismatch`` (a trial process got other hardware than it asked for).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@functools.cache
def gpu_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        )
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def nvidia_gpus() -> list[dict[str, str]]:
    """The NVIDIA GPUs ``nvidia-smi`` lists (name, memory, driver), without initialising CUDA.

    Unlike ``jax.devices()`` this touches no GPU, so it is safe on a node whose GPUs are busy
    with trials. Empty when nvidia-smi is absent or fails.
    """
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[field.strip() for field in line.split(",")] for line in out.stdout.splitlines() if line.strip()]
    return [{"name": r[0], "memory": r[1], "driver": r[2]} for r in rows if len(r) == 3]


def describe() -> dict[str, Any]:
    """The hardware a trial runs on, as recorded in its metadata."""
    import jax

    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    return {
        "platform": devices[0].platform,
        "device_kind": ", ".join(kinds),
        "device_count": len(devices),
        "cpu_model": cpu_model(),
        "cpu_count": usable_cpus(),
        "gpu_driver": gpu_driver() if devices[0].platform == "gpu" else None,
        "hostname": platform.node(),
    }


def hardware_label(info: dict[str, Any]) -> str:
    """A short name for a kind of hardware, e.g. 'cpu:2' or '1xNVIDIA H100 80GB HBM3'."""
    if info["platform"] == "cpu":
        return f"cpu:{info['cpu_count']}"
    return f"{info['device_count']}x{info['device_kind']}"


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    out = {"python": platform.python_version()}
    for package in ("algoperf", "jax", "jaxlib", "flax", "optax", "numpy", "ray", "mlflow"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    record = image_record()
    if record and record.get("image"):
        out["image"] = str(record["image"])  # which docker image (docker/Dockerfile) ran it
    return out


IMAGE_RECORD_ENV = "ALGOPERF_IMAGE_RECORD"
DEFAULT_IMAGE_RECORD = "/etc/algoperf/versions.json"


def image_record() -> dict[str, Any] | None:
    """What the docker image recorded at build time (docker/Dockerfile), or None outside one.

    Read from $ALGOPERF_IMAGE_RECORD, else /etc/algoperf/versions.json. An unreadable file
    gives ``{"error": ...}`` rather than an exception: it is reported, not fatal.
    """
    path = Path(os.environ.get(IMAGE_RECORD_ENV) or DEFAULT_IMAGE_RECORD)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {"error": f"{path}: {e}"}
    return data if isinstance(data, dict) else {"error": f"{path}: not a JSON object"}


@functools.cache
def git_commit(path: str | Path) -> str | None:
    """The commit of the git checkout holding ``path`` (with '+dirty' if modified), or None."""
    folder = Path(path)
    folder = folder if folder.is_dir() else folder.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")

def hardware_kind(hw: dict[str, Any]) -> str:
    """The kind of hardware a trial ran on, from ``describe()``: what a campaign's trials share.

    Accelerator trials: count and device kind ('1xNVIDIA H100 80GB HBM3'); CPU trials:
    cores and CPU model ('cpu:2 (AMD EPYC 7763 64-Core Processor)').
    """
    label = hardware_label(hw)
    return f"{label} ({hw.get('cpu_model', '?')})" if hw.get("platform") == "cpu" else label


# --- hardware specs (--hardware) -------------------------------------------------------

# A label is requested as this fraction of its custom resource: any number of trials
# may share a label; cores and devices are what limits them.
LABEL_REQUEST = 0.001
TPU_PREFIX = "TPU"
ANY_GPU = "GPU"  # NxGPU: GPUs of any type (the campaign's kind check still keeps them alike)


class HardwareSpecError(ValueError):
    """A --hardware string that does not parse."""


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
