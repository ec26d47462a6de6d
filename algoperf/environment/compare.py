"""Node reports compared: the warnings that make one campaign's trials incomparable."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from algoperf.environment.facts import PLUGINS

# Ray refuses a driver whose Python or Ray differs from the cluster's; a driver whose
# algoperf differs plans trials with other code than the nodes run.
DRIVER_COMPARED = ("python", "ray", "algoperf")


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
