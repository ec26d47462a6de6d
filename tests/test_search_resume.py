"""A search whose driver is killed mid-generation resumes from its last checkpoint, evaluating nothing twice."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ALGOPERF = [sys.executable, "-m", "algoperf.cli"]


def _evaluations(root: Path) -> list[dict]:
    path = root / "evaluations.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_killed_search_resumes_without_evaluating_a_candidate_twice(tmp_path):
    command = [*ALGOPERF, "search", "--experiment", "r", "--seed-program", "sgd_momentum", "--workloads", "mnist1d",
               "--generations", "3", "--children", "2", "--max-steps", "3", "--executor", "local", "--no-tracking",
               "--search-dir", str(tmp_path / "searches")]
    root = tmp_path / "searches" / "r"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "COLUMNS": "2000"}  # no line wraps inside paths
    driver = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 900
    try:
        while not any(e["generation"] == 2 for e in _evaluations(root)):  # a trial of generation 2 has run
            assert driver.poll() is None, driver.stdout.read().decode()
            assert time.monotonic() < deadline, "the search made no progress"
            time.sleep(0.2)
        os.killpg(driver.pid, signal.SIGKILL)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    killed_at = json.loads((root / "state.json").read_text())["generation"]
    assert killed_at in (1, 2)

    r = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Resuming {root} at generation {killed_at}" in " ".join(r.stderr.split())
    state = json.loads((root / "state.json").read_text())
    assert state["generation"] == 3
    assert [h["generation"] for h in state["history"]] == [0, 1, 2, 3]  # one checkpoint per generation
    runs = collections.Counter((e["hash"], e["workload"]) for e in _evaluations(root))
    assert runs and max(runs.values()) == 1, runs  # no trial of any candidate ran twice
    trained = {h for h, c in state["candidates"].items() if c["status"] in ("seed", "pruned", "evaluated")}
    assert {h for h, _ in runs} <= trained
    # every trained candidate has exactly one trial folder with a result
    for h in trained:
        assert len(list((root / "trials" / h).rglob("trial_result.json"))) == 1
    assert "# best:" in r.stdout
