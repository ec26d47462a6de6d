"""The whole ``algoperf env`` report: gathered, then printed."""

from __future__ import annotations

from typing import Any

from algoperf.environment.cluster import gather_cluster
from algoperf.environment.compare import _name, local_warnings, mismatches
from algoperf.environment.facts import (
    PLUGINS,
    node_facts,
    ray_auth_facts,
    resolve_address,
    tracking_facts,
)


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
