"""``algoperf env``: what this machine, and every node of a Ray cluster, runs.

A campaign's results are comparable only if its trials ran on the same software and the
same kind of device. This module gathers, per machine: devices (from JAX, or from
nvidia-smi when JAX must not touch busy GPUs), the versions of the packages a result
depends on, what the docker image recorded at build time (docker/Dockerfile writes
/etc/algoperf/versions.json), the Ray address and token setup, and the MLflow tracking
URI. With a Ray cluster it runs one tiny task on every alive node, pinned there with
``NodeAffinitySchedulingStrategy``, and :func:`mismatches` turns the node reports into
warnings: different versions, different device kinds among the nodes trials can run on,
or a node that offers Ray GPUs its JAX cannot see.

The build step of the image calls ``python -m algoperf.environment write-image-record``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from algoperf import hardware

# Packages a node's results depend on; compared across nodes (CUDA plugins only among the
# nodes that have one: a CPU-only head has none, by design).
PLUGINS = ("jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin", "jax-cuda13-pjrt")
# Ray refuses a driver whose Python or Ray differs from the cluster's; a driver whose
# algoperf differs plans trials with other code than the nodes run.
DRIVER_COMPARED = ("python", "ray", "algoperf")
HEAD_RESOURCE = "node:__internal_head__"
DEFAULT_TOKEN_PATH = Path.home() / ".ray" / "auth_token"


class ClusterError(RuntimeError):
    """The Ray cluster named by --address / RAY_ADDRESS could not be reached."""


# --- one machine -----------------------------------------------------------------------
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


# --- endpoints --------------------------------------------------------------------------
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


# --- a cluster --------------------------------------------------------------------------
def _probe(use_jax: bool) -> dict[str, Any]:
    import ray

    # The node the task really ran on: proof that the affinity held.
    return {**node_facts(use_jax=use_jax), "ray_node_id": ray.get_runtime_context().get_node_id()}


def _check_listening(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once when nothing listens at a host:port address (Ray would retry for 20-30 s)."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or "/" in host:
        return  # 'auto', or a form Ray resolves itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address!r}: nothing answers on {host}:{port} ({e.strerror or e}); "
            "is the head up, is the port published (ALGOPERF_BIND, an SSH tunnel), is the address right?"
        ) from e


def gather_cluster(address: str, use_jax: bool = True, timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """One report per alive node of the Ray cluster at ``address``.

    Each node runs :func:`node_facts` in a task pinned to it (hard node affinity), asking
    for no CPU so it runs beside trials and on a head that offers none, in a worker
    process that exits afterwards (``max_calls=1``: it may hold CUDA contexts). A node
    that does not answer within ``timeout_s`` gets an ``error`` instead of ``facts``.
    Connects (and disconnects) unless this process is already connected.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    started = False
    if not ray.is_initialized():
        _check_listening(address)
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as e:  # ConnectionError, or an auth/version error: one clear message
            raise ClusterError(
                f"cannot reach the Ray cluster at {address!r} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                "is the head up, and does this machine have the cluster's token "
                "(RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, see docs/deployment.md)?"
            ) from e
        started = True
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        probe = ray.remote(num_cpus=0, max_calls=1, max_retries=0)(_probe)
        env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}  # listing devices must not grab 75% of each GPU
        refs = {
            n["NodeID"]: probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
                runtime_env={"env_vars": env},
            ).remote(use_jax)
            for n in nodes
        }
        deadline = time.monotonic() + timeout_s
        ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
        reports = []
        for n in nodes:
            ref = refs[n["NodeID"]]
            entry: dict[str, Any] = {
                "node_id": n["NodeID"],
                "address": n.get("NodeManagerAddress"),
                "head": HEAD_RESOURCE in n.get("Resources", {}),
                "resources": {k: v for k, v in n.get("Resources", {}).items() if not k.startswith("node:")},
            }
            try:
                entry["facts"] = ray.get(ref, timeout=max(0.1, deadline - time.monotonic()))
            except ray.exceptions.GetTimeoutError:
                ray.cancel(ref, force=True)
                entry["error"] = f"no answer within {timeout_s:g} s (its workers cannot start, or it is overloaded)"
            except Exception as e:  # noqa: BLE001 - one node's failure is that node's report
                entry["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
            reports.append(entry)
        return reports
    finally:
        if started:
            ray.shutdown()


# --- comparing ---------------------------------------------------------------------------
def _name(report: dict[str, Any]) -> str:
    facts = report.get("facts") or {}
    host = facts.get("hostname") or report.get("address") or report.get("node_id", "?")[:12]
    return f"{host} (head)" if report.get("head") else str(host)


def _differ(what: str, by_value: dict[str, list[str]]) -> str | None:
    if len(by_value) <= 1:
        return None
    parts = "; ".join(f"{value} on {', '.join(sorted(names))}" for value, names in sorted(by_value.items()))
    return f"{what} differs between nodes: {parts}"


def mismatches(nodes: list[dict[str, Any]], local: dict[str, Any] | None = None) -> list[str]:
    """Warnings about nodes that would make one campaign's trials incomparable.

    ``nodes`` are :func:`gather_cluster` reports (``facts``, ``resources``, ``head``);
    ``local`` is this machine's :func:`node_facts` when it drives the campaign.

    * every package version (and Python) must agree across nodes; a JAX CUDA plugin only
      among the nodes that have one;
    * device kinds must agree among the nodes trials can land on: GPU nodes (Ray resource
      GPU > 0) by GPU model, CPU-only nodes offering CPUs by CPU model;
    * a node that offers Ray GPUs must have a JAX that sees GPUs (else every GPU trial
      there is refused or silently runs on the CPU);
    * the driver must run the nodes' Python, Ray and algoperf.
    """
    warnings = [f"node {_name(r)} did not report: {r['error']}" for r in nodes if "error" in r]
    done = [r for r in nodes if "facts" in r]
    keys = sorted({k for r in done for k in r["facts"]["versions"]})
    for key in keys:
        by_value: dict[str, list[str]] = defaultdict(list)
        for r in done:
            value = r["facts"]["versions"].get(key)
            if value is None and key in PLUGINS:
                continue
            by_value[str(value or "not installed")].append(_name(r))
        if message := _differ(key, by_value):
            warnings.append(message)
    by_image: dict[str, list[str]] = defaultdict(list)
    for r in done:
        image = r["facts"].get("image")
        by_image[str(image.get("image")) if image else "no image"].append(_name(r))
        for drift in (image or {}).get("drift", []):
            warnings.append(
                f"node {_name(r)}: {drift['package']} {drift['installed'] or 'missing'} is installed over the "
                f"image's {drift['recorded']}"
            )
    if message := _differ("docker image", by_image):
        warnings.append(message)

    gpu_nodes = [r for r in done if r.get("resources", {}).get("GPU", 0) > 0]
    cpu_nodes = [r for r in done if r.get("resources", {}).get("GPU", 0) == 0 and r.get("resources", {}).get("CPU", 0) > 0]
    by_gpu: dict[str, list[str]] = defaultdict(list)
    for r in gpu_nodes:
        devices = r["facts"]["devices"]
        if devices.get("platform") != "gpu":
            seen = devices.get("error") or f"{devices.get('device_count')} {devices.get('platform')} device(s)"
            warnings.append(
                f"node {_name(r)} offers Ray {r['resources']['GPU']:g} GPU(s) but {devices.get('source', 'jax')} sees "
                f"{seen}: GPU trials there would be refused; use the CUDA image (JAX_EXTRA=cuda12) and "
                "give the container the GPUs (compose `deploy.resources.reservations.devices`)"
            )
            continue
        by_gpu[str(devices.get("device_kind"))].append(_name(r))
    if message := _differ("GPU model", by_gpu):
        warnings.append(message + ": pin one kind per campaign with --hardware (e.g. 1xH100)")
    by_cpu: dict[str, list[str]] = defaultdict(list)
    for r in cpu_nodes:
        by_cpu[str(r["facts"].get("cpu_model"))].append(_name(r))
    if message := _differ("CPU model of the CPU-only nodes", by_cpu):
        warnings.append(message + ": cpu:N trials on them are not comparable; label one kind with "
                        "`ray start --resources` and use --hardware cpu:N@LABEL")

    if local is not None:
        for key in DRIVER_COMPARED:
            theirs = {r["facts"]["versions"].get(key) for r in done}
            mine = local["versions"].get(key)
            if theirs and theirs != {mine}:
                warnings.append(
                    f"this machine runs {key} {mine}, the cluster {', '.join(sorted(str(t) for t in theirs))}: "
                    + ("Ray refuses a driver whose Python or Ray differs" if key != "algoperf"
                       else "trials run the nodes' algoperf, not this one")
                )
    return warnings


def local_warnings(facts: dict[str, Any], tracking: dict[str, Any], ray_auth: dict[str, Any],
                   address: str | None) -> list[str]:
    """Warnings about this machine alone: a modified image, an endpoint that refuses us."""
    warnings = [
        f"{d['package']} {d['installed'] or 'missing'} is installed over the image's {d['recorded']}"
        for d in (facts.get("image") or {}).get("drift", [])
    ]
    if "error" in facts["devices"]:
        warnings.append(f"JAX cannot list devices here: {facts['devices']['error']}")
    if tracking.get("error"):
        warnings.append(tracking["error"])
    elif tracking.get("reachable") is False:
        warnings.append(f"MLflow at {tracking['uri']}: {tracking['server']}")
    elif tracking.get("access_ok") is False:
        warnings.append(f"MLflow at {tracking['uri']}: access {tracking['access']}")
    if address and ray_auth["effective"] != "token":
        warnings.append("Ray token authentication is off in this shell (RAY_AUTH_MODE / token not set): "
                        "a cluster set up as in docs/deployment.md will refuse this machine")
    return warnings


def gather(address: str | None = None, tracking_uri: str | None = None, use_jax: bool = True,
           timeout_s: float = 120.0) -> dict[str, Any]:
    """The whole ``algoperf env`` report (see the module docstring). Raises ClusterError."""
    address, address_source = resolve_address(address)
    nodes = gather_cluster(address, use_jax, timeout_s) if address else None  # Ray before JAX
    local = node_facts(use_jax=True)
    tracking = tracking_facts(tracking_uri)
    ray_auth = ray_auth_facts()
    warnings = local_warnings(local, tracking, ray_auth, address)
    if nodes is not None:
        warnings += mismatches(nodes, local)
    return {
        "local": local,
        "ray": {"address": address, "source": address_source, "auth": ray_auth},
        "tracking": tracking,
        "nodes": nodes,
        "warnings": warnings,
    }


# --- printing ---------------------------------------------------------------------------
_SHOWN = ("algoperf", "jax", "jaxlib", "flax", "optax", "ray", "mlflow", "numpy")


def _versions_text(versions: dict[str, str]) -> str:
    parts = [f"{k} {versions[k]}" for k in _SHOWN if k in versions]
    parts += [f"{k} {v}" for k, v in versions.items() if k in PLUGINS]
    return ", ".join(parts)


def _devices_text(facts: dict[str, Any]) -> str:
    d = facts["devices"]
    if "error" in d:
        return f"JAX error: {d['error']}"
    text = f"{d['device_count']} x {d['device_kind']} ({d['source']})"
    return text if d["platform"] != "cpu" else f"cpu:{facts['cpu_count']} {facts['cpu_model']} ({d['source']})"


def print_report(report: dict[str, Any], console: Any) -> None:
    """The report as text on a rich console."""
    from rich.table import Table

    local = report["local"]
    image = local["image"]
    console.print(f"[bold]This machine[/] {local['hostname']} ({local['os']}, Python {local['python']})", highlight=False)
    console.print(f"  devices   {_devices_text(local)}", highlight=False)
    gpus = local["gpus"]
    console.print("  GPUs      " + (", ".join(f"{g['name']} {g['memory']}" for g in gpus) + f" (driver {gpus[0]['driver']})"
                                   if gpus else "none (nvidia-smi)"), highlight=False)
    console.print(f"  versions  {_versions_text(local['versions'])}", highlight=False, soft_wrap=True)
    console.print(f"  git       {local['algoperf_git_commit'] or 'not a git checkout'}", highlight=False)
    console.print("  image     " + (f"{image.get('image', image.get('error'))}" if image else "none (not in an algoperf image)"),
                  highlight=False)
    ray_info = report["ray"]
    auth = ray_info["auth"]
    console.print(f"[bold]Ray[/]       {ray_info['address'] or '-'} ({ray_info['source']}); authentication: {auth['effective']}"
                  + (f" (token from {auth['token_source']})" if auth["token_source"] else ""), highlight=False, soft_wrap=True)
    t = report["tracking"]
    line = f"[bold]MLflow[/]    {t.get('uri')} ({t['source']})"
    if "server" in t:
        line += f": server {t['server']}" + (f", access {t['access']}" if "access" in t else "")
    console.print(line, highlight=False, soft_wrap=True)
    if report["nodes"] is not None:
        table = Table(title=f"Nodes of {ray_info['address']}")
        for column in ("node", "Ray resources", "devices", "versions", "image"):
            table.add_column(column)
        for r in report["nodes"]:
            res = r["resources"]
            offered = ", ".join(f"{k} {v:g}" for k, v in sorted(res.items()) if k in ("CPU", "GPU") or k.startswith("accelerator_type:"))
            if "facts" not in r:
                table.add_row(_name(r), offered, f"[red]{r['error']}[/]", "", "")
                continue
            f = r["facts"]
            table.add_row(_name(r), offered, _devices_text(f), _versions_text(f["versions"]),
                          str((f["image"] or {}).get("image", "-")))
        console.print(table)
    for warning in report["warnings"]:
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


# --- the image's build record -------------------------------------------------------------
def write_image_record(path: Path, fields: dict[str, str]) -> dict[str, Any]:
    """Write what a docker image holds: ``fields`` (build args) and every installed package.

    ``image`` names it in one line (tagged on every trial as ``algoperf.versions.image``).
    """
    packages = {dist.metadata["Name"].lower(): dist.version for dist in importlib.metadata.distributions()}
    record: dict[str, Any] = {
        "python": platform.python_version(),
        **fields,
        "packages": dict(sorted(packages.items())),
    }
    record.setdefault(
        "image",
        f"algoperf {packages.get('algoperf', '?')} jax[{fields.get('jax_extra', '?')}] "
        f"commit {fields.get('git_commit') or 'unknown'}",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    """``python -m algoperf.environment write-image-record PATH [--set key=value ...]``."""
    parser = argparse.ArgumentParser(prog="python -m algoperf.environment")
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write-image-record", help="record the image's build args and packages")
    write.add_argument("path", type=Path)
    write.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a build fact to record")
    args = parser.parse_args(argv)
    fields = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        fields[key] = value
    record = write_image_record(args.path, fields)
    print(f"wrote {args.path}: {record['image']}, {len(record['packages'])} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
