"""The listing commands, as scripts use them (--json)."""

from __future__ import annotations

import json
import subprocess
import sys


def _json(*args: str):
    proc = subprocess.run([sys.executable, "-m", "algoperf.cli", *args, "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_workloads_json_gives_targets_budgets_and_parameter_counts():
    rows = {row["name"]: row for row in _json("workloads")}
    assert {"mnist1d", "mnist", "wmt", "imagenet_resnet"} <= set(rows)
    for row in rows.values():
        for key in ("target_metric_name", "validation_target_value", "test_target_value", "max_allowed_runtime_sec"):
            assert row[key] is not None, (row["name"], key)
        assert row["num_params"] > 0
    # Parameter counts of AlgoPerf's models, from their spec sheets.
    assert rows["mnist"]["num_params"] == 101_770
    assert rows["imagenet_resnet"]["num_params"] == 25_557_032
    assert rows["criteo1tb"]["num_params"] == 539_267_457
    assert rows["mnist1d_gelu"]["base_workload"] == "mnist1d"


def test_submissions_json_lists_the_baselines_with_summaries():
    rows = {row["name"]: row for row in _json("submissions")}
    assert {"nadamw", "adamw", "lion", "schedule_free_adamw", "refined"} <= set(rows)
    assert all(row["summary"] for row in rows.values())
