"""Every node of a Ray cluster reports its own facts (a tiny task pinned to each node)."""

from __future__ import annotations

import logging
import time
from typing import Any

from algoperf.environment.facts import node_facts

HEAD_RESOURCE = "node:__internal_head__"


class ClusterError(RuntimeError):
    """The Ray cluster named by --address / RAY_ADDRESS could not be reached."""


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
