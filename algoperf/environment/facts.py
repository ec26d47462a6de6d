"""One machine's facts for ``algoperf env``: devices, package versions, the image record,
and the endpoints this process would use (the Ray address and token, the MLflow server)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

from algoperf import hardware

# Packages a node's results depend on; compared across nodes (CUDA plugins only among the
# nodes that have one: a CPU-only head has none, by design).
PLUGINS = ("jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin", "jax-cuda13-pjrt")
DEFAULT_TOKEN_PATH = Path.home() / ".ray" / "auth_token"


def package_versions() -> dict[str, str]:
    """Python, the packages a result depends on, and the JAX CUDA plugins that are installed."""
    out = {k: v for k, v in hardware.versions().items() if k != "image"}
    for plugin in PLUGINS:
        try:
            out[plugin] = importlib.metadata.version(plugin)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def image_summary() -> dict[str, Any] | None:
    """The image's build record without its package list, plus the packages whose installed
    version differs from the record (someone pip-installed over the image)."""
    record = hardware.image_record()
    if record is None:
        return None
    summary = {k: v for k, v in record.items() if k != "packages"}
    drift = []
    for name, recorded in sorted((record.get("packages") or {}).items()):
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != recorded:
            drift.append({"package": name, "recorded": recorded, "installed": installed})
    summary["drift"] = drift
    return summary


def _devices(use_jax: bool, gpus: list[dict[str, str]]) -> dict[str, Any]:
    if use_jax:
        try:
            info = hardware.describe()
        except Exception as e:  # noqa: BLE001 - a broken JAX install is a fact to report
            return {"source": "jax", "error": f"{type(e).__name__}: {e}"}
        return {"source": "jax", **{k: info[k] for k in ("platform", "device_kind", "device_count")}}
    if gpus:
        return {"source": "nvidia-smi", "platform": "gpu",
                "device_kind": ", ".join(sorted({g["name"] for g in gpus})), "device_count": len(gpus)}
    return {"source": "nvidia-smi", "platform": "cpu", "device_kind": "cpu", "device_count": 1}


def node_facts(use_jax: bool = True) -> dict[str, Any]:
    """What this machine is and runs.

    ``use_jax=False`` reads GPUs from nvidia-smi instead of ``jax.devices()``, which would
    create a CUDA context on every GPU of the machine, including GPUs running trials.
    """
    import algoperf

    gpus = hardware.nvidia_gpus()
    devices = _devices(use_jax, gpus)
    cpu_count = hardware.usable_cpus()
    label = None if "error" in devices else hardware.hardware_label({**devices, "cpu_count": cpu_count})
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cpu_model": hardware.cpu_model(),
        "cpu_count": cpu_count,
        "devices": devices,
        "hardware_label": label,
        "gpus": gpus,
        "versions": package_versions(),
        "algoperf_git_commit": hardware.git_commit(Path(algoperf.__file__).parent),
        "image": image_summary(),
    }


def resolve_address(cli_value: str | None) -> tuple[str | None, str]:
    """The Ray address to inspect and where it came from (--address, RAY_ADDRESS or none)."""
    if cli_value:
        return cli_value, "--address"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    return None, "none: `algoperf run` starts an embedded Ray"


def ray_auth_facts() -> dict[str, Any]:
    """How this process would authenticate to a Ray cluster (never the token itself).

    Ray 2.60 reads the token from RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH, else
    ~/.ray/auth_token; with RAY_AUTH_MODE unset it turns token auth on when a token exists.
    """
    mode = os.environ.get("RAY_AUTH_MODE")
    source = None
    if os.environ.get("RAY_AUTH_TOKEN"):
        source = "RAY_AUTH_TOKEN"
    elif os.environ.get("RAY_AUTH_TOKEN_PATH"):
        path = Path(os.environ["RAY_AUTH_TOKEN_PATH"])
        ok = path.is_file() and path.stat().st_size > 0
        source = f"RAY_AUTH_TOKEN_PATH={path}" + ("" if ok else " (missing or empty: Ray will abort)")
    elif DEFAULT_TOKEN_PATH.is_file():
        source = str(DEFAULT_TOKEN_PATH)
    if mode:
        effective = mode.lower()
    else:
        effective = "token" if source else "disabled"
    return {"mode": mode or "unset", "effective": effective, "token_source": source}


def tracking_facts(cli_value: str | None, timeout_s: float = 15.0) -> dict[str, Any]:
    """The MLflow tracking URI (--tracking-uri, MLFLOW_TRACKING_URI or the default), and for
    a server whether it answers and accepts this process's credentials."""
    source = "--tracking-uri" if cli_value else "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "default"
    info: dict[str, Any] = {"source": source}
    try:
        from algoperf.tracking import TrackingError, resolve_tracking_uri
    except ImportError:  # tracking not installed: report what was given
        info["uri"] = cli_value or os.environ.get("MLFLOW_TRACKING_URI")
    else:
        try:
            info["uri"] = resolve_tracking_uri(cli_value)
        except TrackingError as e:
            info["uri"], info["error"] = cli_value or os.environ.get("MLFLOW_TRACKING_URI"), str(e)
            return info
    info["username"] = os.environ.get("MLFLOW_TRACKING_USERNAME")
    info["password_set"] = bool(os.environ.get("MLFLOW_TRACKING_PASSWORD"))
    info["token_set"] = bool(os.environ.get("MLFLOW_TRACKING_TOKEN"))
    uri = info.get("uri") or ""
    if uri.startswith(("http://", "https://")):
        info.update(_probe_server(uri, info["username"], os.environ.get("MLFLOW_TRACKING_PASSWORD"), timeout_s))
    return info


def _probe_server(uri: str, username: str | None, password: str | None, timeout_s: float) -> dict[str, Any]:
    import requests

    try:
        health = requests.get(f"{uri}/health", timeout=timeout_s)
    except requests.RequestException as e:
        return {"reachable": False, "server": f"not reachable ({type(e).__name__})"}
    if health.status_code != 200:
        return {"reachable": False, "server": f"/health answered HTTP {health.status_code}"}
    auth = (username, password or "") if username else None
    try:
        api = requests.get(f"{uri}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                           auth=auth, timeout=timeout_s)
    except requests.RequestException as e:
        # basic auth hashes the password (PBKDF2) on every request: slow on a loaded server
        return {"reachable": True, "server": "up", "access": f"not checked: the API did not answer ({type(e).__name__})"}
    if api.status_code == 200:
        access = f"granted (as {username})" if username else "granted without credentials"
    elif api.status_code == 401:
        access = ("refused: wrong MLFLOW_TRACKING_USERNAME/PASSWORD" if username
                  else "refused: the server wants MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    else:
        access = f"HTTP {api.status_code}"
    return {"reachable": True, "server": "up", "access": access, "access_ok": api.status_code == 200}
