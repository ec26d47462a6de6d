"""`algoperf env`: this machine's report, the image record, node mismatches, a real cluster."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from algoperf import environment, hardware
from tests.conftest import RAY_TEST_NODE, RAY_TEST_WORKER

ALGOPERF = str(Path(sys.executable).parent / "algoperf")


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the cluster/tracking/image settings a test sets."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                        "MLFLOW_TRACKING_PASSWORD", hardware.IMAGE_RECORD_ENV)}
    env["ALGOPERF_IMAGE_RECORD"] = "/nonexistent/versions.json"  # never this machine's /etc file
    env.update(extra)
    return env


def _env_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([ALGOPERF, "env", *args], capture_output=True, text=True, timeout=120,
                          env=_clean_env(**env))


# --- this machine ----------------------------------------------------------------------
def test_env_json_reports_this_machine(tmp_path: Path) -> None:
    import jax

    db = tmp_path / "runs.db"
    out = _env_cli("--json", "--tracking-uri", f"sqlite:///{db}")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    local = report["local"]
    for package in ("jax", "jaxlib", "flax", "optax", "ray", "mlflow", "algoperf", "numpy"):
        assert local["versions"][package] == importlib.metadata.version(package)
    devices = jax.devices()
    assert local["devices"] == {"source": "jax", "platform": devices[0].platform,
                                "device_kind": devices[0].device_kind, "device_count": len(devices)}
    assert local["cpu_count"] == len(os.sched_getaffinity(0))
    assert local["hardware_label"] == hardware.hardware_label({**local["devices"], "cpu_count": local["cpu_count"]})
    assert local["image"] is None and report["nodes"] is None
    assert report["ray"]["address"] is None
    assert report["tracking"] == {**report["tracking"], "uri": f"sqlite:///{db}", "source": "--tracking-uri"}
    assert report["warnings"] == []


def test_env_text_names_versions_and_endpoints() -> None:
    out = _env_cli(MLFLOW_TRACKING_URI="sqlite:////tmp/elsewhere.db")
    assert out.returncode == 0, out.stderr
    assert f"jax {importlib.metadata.version('jax')}" in out.stdout
    assert f"ray {importlib.metadata.version('ray')}" in out.stdout
    assert "sqlite:////tmp/elsewhere.db (MLFLOW_TRACKING_URI)" in out.stdout
    assert "none (not in an algoperf image)" in out.stdout


def test_unreachable_tracking_server_is_a_warning_and_strict_fails() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = _env_cli("--json", MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["tracking"]["reachable"] is False
    assert any(f"127.0.0.1:{port}" in w and "not reachable" in w for w in report["warnings"])
    strict = _env_cli("--strict", MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}")
    assert strict.returncode == 1 and "warning:" in strict.stdout


def test_an_unreachable_cluster_is_one_clear_error() -> None:
    out = _env_cli("--address", "ray://127.0.0.1:1", "--timeout", "5")
    assert out.returncode == 2
    assert "cannot reach the Ray cluster at 'ray://127.0.0.1:1'" in out.stderr
    assert "Traceback" not in out.stderr


# --- the image record --------------------------------------------------------------------
def test_image_record_holds_every_package_and_is_reported(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "etc" / "versions.json"
    done = subprocess.run(
        [sys.executable, "-m", "algoperf.environment", "write-image-record", str(path),
         "--set", "jax_extra=cpu", "--set", "git_commit=0123456789abcdef"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(path.read_text())
    assert record["packages"]["jax"] == importlib.metadata.version("jax")
    assert record["packages"]["ray"] == importlib.metadata.version("ray")
    assert record["jax_extra"] == "cpu" and "jax[cpu]" in record["image"] and "0123456789abcdef" in record["image"]

    monkeypatch.setenv(hardware.IMAGE_RECORD_ENV, str(path))
    assert hardware.versions()["image"] == record["image"]  # so every trial is tagged with it
    assert environment.image_summary()["drift"] == []

    # Someone pip-installed another flax over the image: reported as drift.
    record["packages"]["flax"] = "0.0.1"
    path.write_text(json.dumps(record))
    summary = environment.image_summary()
    assert summary["drift"] == [{"package": "flax", "recorded": "0.0.1", "installed": importlib.metadata.version("flax")}]
    assert "packages" not in summary
    out = _env_cli("--json", ALGOPERF_IMAGE_RECORD=str(path))
    assert any("flax" in w and "0.0.1" in w for w in json.loads(out.stdout)["warnings"])


def test_bad_image_record_arguments_are_refused(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "algoperf.environment", "write-image-record",
                           str(tmp_path / "v.json"), "--set", "no_equals_sign"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "expected KEY=VALUE" in done.stderr
    assert not (tmp_path / "v.json").exists()


def test_unreadable_image_record_is_reported_not_raised(tmp_path: Path, monkeypatch) -> None:
    bad = tmp_path / "versions.json"
    bad.write_text("{not json")
    monkeypatch.setenv(hardware.IMAGE_RECORD_ENV, str(bad))
    assert "error" in hardware.image_record()
    assert "image" not in hardware.versions()


# --- Ray token facts ------------------------------------------------------------------------
def test_ray_auth_facts_never_show_the_token(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "s3cr3t-token-value")
    facts = environment.ray_auth_facts()
    assert facts == {"mode": "token", "effective": "token", "token_source": "RAY_AUTH_TOKEN"}
    assert "s3cr3t" not in json.dumps(facts)

    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    assert "missing or empty" in environment.ray_auth_facts()["token_source"]
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert environment.ray_auth_facts()["effective"] == "disabled"


def test_driver_without_token_is_warned_when_it_names_a_cluster() -> None:
    facts = {"devices": {"platform": "cpu"}, "image": None}
    off = {"mode": "disabled", "effective": "disabled", "token_source": None}
    on = {"mode": "token", "effective": "token", "token_source": "RAY_AUTH_TOKEN"}
    assert any("token authentication is off" in w for w in environment.local_warnings(facts, {}, off, "ray://h:10001"))
    assert environment.local_warnings(facts, {}, on, "ray://h:10001") == []
    assert environment.local_warnings(facts, {}, off, None) == []


# --- mismatches between nodes (hand-made reports) --------------------------------------------
VERSIONS = {"python": "3.11.7", "algoperf": "0.1.0", "jax": "0.10.2", "jaxlib": "0.10.2", "flax": "0.12.8",
            "optax": "0.2.8", "numpy": "2.4.6", "ray": "2.60.0", "mlflow": "3.17.2"}
H100 = "NVIDIA H100 80GB HBM3"


def _node(host: str, *, gpus: int = 0, kind: str = H100, cpu_model: str = "Xeon 8480", head: bool = False,
          cpus: float = 8, plugin: str | None = None, image: dict | None = None, **versions: str) -> dict:
    devices = ({"source": "jax", "platform": "gpu", "device_kind": kind, "device_count": gpus} if gpus
               else {"source": "jax", "platform": "cpu", "device_kind": "cpu", "device_count": 1})
    v = {**VERSIONS, **versions}
    if plugin:
        v["jax-cuda12-plugin"] = plugin
    resources = {"CPU": cpus, **({"GPU": float(gpus), f"accelerator_type:{kind.split()[1]}": 1.0} if gpus else {})}
    return {"node_id": host * 4, "address": host, "head": head, "resources": resources,
            "facts": {"hostname": host, "cpu_model": cpu_model, "devices": devices, "versions": v, "image": image}}


def _cluster() -> list[dict]:
    return [_node("head", head=True, cpus=0),
            _node("gpu-a", gpus=8, plugin="0.10.2"), _node("gpu-b", gpus=8, plugin="0.10.2")]


def test_identical_nodes_give_no_warning() -> None:
    assert environment.mismatches(_cluster()) == []
    # The driver (a laptop without CUDA) is compared on Python, Ray and algoperf only.
    laptop = {"versions": {**VERSIONS, "jax": "0.9.0"}}
    assert environment.mismatches(_cluster(), laptop) == []


def test_a_different_package_version_is_named_with_its_nodes() -> None:
    nodes = _cluster()
    nodes[2]["facts"]["versions"]["optax"] = "0.2.7"
    [warning] = environment.mismatches(nodes)
    assert warning.startswith("optax differs between nodes")
    assert "0.2.7 on gpu-b" in warning and "0.2.8 on gpu-a, head (head)" in warning


def test_cuda_plugin_compared_only_where_installed() -> None:
    nodes = _cluster()
    assert "jax-cuda12-plugin" not in nodes[0]["facts"]["versions"]  # CPU head: fine
    nodes[2]["facts"]["versions"]["jax-cuda12-plugin"] = "0.10.1"
    [warning] = environment.mismatches(nodes)
    assert "jax-cuda12-plugin differs" in warning and "0.10.1 on gpu-b" in warning


def test_different_gpu_models_are_a_mismatch_but_counts_and_cpu_only_head_are_not() -> None:
    nodes = [*_cluster(), _node("gpu-c", gpus=4, plugin="0.10.2")]  # 4 GPUs instead of 8: fine
    assert environment.mismatches(nodes) == []
    nodes.append(_node("gpu-d", gpus=8, kind="NVIDIA A100-SXM4-80GB", plugin="0.10.2"))
    [warning] = environment.mismatches(nodes)
    assert warning.startswith("GPU model differs between nodes")
    assert "NVIDIA A100-SXM4-80GB on gpu-d" in warning and f"{H100} on gpu-a, gpu-b, gpu-c" in warning
    assert "--hardware" in warning


def test_gpus_offered_to_ray_but_invisible_to_jax() -> None:
    nodes = _cluster()
    nodes[1]["facts"]["devices"] = {"source": "jax", "platform": "cpu", "device_kind": "cpu", "device_count": 1}
    [warning] = environment.mismatches(nodes)
    assert "node gpu-a offers Ray 8 GPU(s) but jax sees 1 cpu device(s)" in warning
    assert "JAX_EXTRA=cuda12" in warning


def test_cpu_models_compared_among_cpu_only_trial_nodes() -> None:
    nodes = [_node("head", head=True, cpus=0, cpu_model="Tiny"), _node("c1"), _node("c2")]
    assert environment.mismatches(nodes) == []  # the head offers no CPU: its model is irrelevant
    nodes[2]["facts"]["cpu_model"] = "EPYC 9654"
    [warning] = environment.mismatches(nodes)
    assert "CPU model of the CPU-only nodes differs" in warning and "EPYC 9654 on c2" in warning
    # GPU nodes' host CPUs may differ: GPU trials are timed on the GPU kind.
    gpu_nodes = _cluster()
    gpu_nodes[2]["facts"]["cpu_model"] = "EPYC 9654"
    assert environment.mismatches(gpu_nodes) == []


def test_driver_with_other_python_ray_or_algoperf_is_warned() -> None:
    for key, value in (("python", "3.12.1"), ("ray", "2.59.0"), ("algoperf", "0.0.9")):
        driver = {"versions": {**VERSIONS, key: value}}
        [warning] = environment.mismatches(_cluster(), driver)
        assert warning.startswith(f"this machine runs {key} {value}, the cluster {VERSIONS[key]}")


def test_images_and_silent_nodes_are_reported() -> None:
    image = {"image": "algoperf 0.1.0 jax[cuda12] commit aaa", "drift": []}
    nodes = [_node(h, gpus=8, plugin="0.10.2", image=copy.deepcopy(image)) for h in ("gpu-a", "gpu-b")]
    assert environment.mismatches(nodes) == []
    nodes[1]["facts"]["image"]["image"] = "algoperf 0.1.0 jax[cuda12] commit bbb"
    nodes[1]["facts"]["image"]["drift"] = [{"package": "optax", "recorded": "0.2.8", "installed": "0.2.9"}]
    warnings = environment.mismatches(nodes + [{"node_id": "x", "address": "10.0.0.9", "head": False,
                                                 "resources": {}, "error": "no answer within 5 s"}])
    assert any(w.startswith("docker image differs") and "commit bbb on gpu-b" in w for w in warnings)
    assert any("node gpu-b: optax 0.2.9 is installed over the image's 0.2.8" in w for w in warnings)
    assert any(w == "node 10.0.0.9 did not report: no answer within 5 s" for w in warnings)


# --- a real two-node cluster -----------------------------------------------------------------
CLUSTER_SCRIPT = textwrap.dedent("""
    import json, sys
    import ray
    from ray.cluster_utils import Cluster
    from algoperf import environment

    STORE = 80 * 1024**2
    RAY_TEST_NODE, RAY_TEST_WORKER = json.loads(sys.argv[1])
    nodes = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": STORE, **RAY_TEST_NODE})
    nodes.add_node(num_cpus=1, num_gpus=1, resources={"accelerator_type:H100": 1}, object_store_memory=STORE,
                   **RAY_TEST_WORKER)
    nodes.wait_for_nodes()
    try:
        reports = environment.gather_cluster(nodes.address, use_jax=False, timeout_s=90)
        assert not ray.is_initialized(), "gather_cluster must disconnect what it connected"
        ray.init(address=nodes.address, log_to_driver=False, logging_level="ERROR")
        alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        ray.shutdown()
        print(json.dumps({"reports": reports, "alive": alive,
                          "warnings": environment.mismatches(reports, environment.node_facts(use_jax=False))}))
    finally:
        nodes.shutdown()
""")


@pytest.mark.slow
def test_every_node_of_a_real_cluster_reports_from_itself(tmp_path: Path) -> None:
    """Head (no CPUs, like compose's ray-head) + a worker faking one H100 on a real Ray."""
    script = tmp_path / "cluster.py"
    script.write_text(CLUSTER_SCRIPT)
    nodes = json.dumps([RAY_TEST_NODE, RAY_TEST_WORKER])
    done = subprocess.run([sys.executable, str(script), nodes], capture_output=True, text=True, timeout=240,
                          env=_clean_env(JAX_PLATFORMS="cpu"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    reports = out["reports"]
    assert sorted(r["node_id"] for r in reports) == out["alive"] and len(reports) == 2
    for r in reports:
        assert "error" not in r, r
        assert r["facts"]["ray_node_id"] == r["node_id"]  # the task ran on the node it describes
        assert r["facts"]["versions"]["ray"] == importlib.metadata.version("ray")
    [head] = [r for r in reports if r["head"]]
    [worker] = [r for r in reports if not r["head"]]
    assert head["resources"].get("CPU", 0) == 0
    assert worker["resources"]["GPU"] == 1 and worker["resources"]["accelerator_type:H100"] == 1
    # The worker offers Ray a GPU that this machine does not have: exactly that is flagged.
    assert out["warnings"] == [
        f"node {worker['facts']['hostname']} offers Ray 1 GPU(s) but nvidia-smi sees 1 cpu device(s): GPU trials "
        "there would be refused; use the CUDA image (JAX_EXTRA=cuda12) and give the container the GPUs "
        "(compose `deploy.resources.reservations.devices`)"
    ]
