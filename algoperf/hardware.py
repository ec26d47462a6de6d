"""What this machine is: processor, accelerators, software versions, git commit."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import subprocess
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
