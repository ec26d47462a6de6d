"""Each baseline reaches the mnist1d target within budget at the first point of its search space.

Slow (about 10 s of training per submission): run with ``pytest -m slow``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from algoperf.runner.trial import REACHED, TrialConfig, run_trial
from algoperf.submission.loading import load_submission

BASELINES = [
    "adamw", "sgd_nesterov", "heavy_ball", "lion", "linear_decay", "refined",
    "schedule_free_adamw", "muon", "nadamw_self",
]


def first_point(name: str) -> dict | None:
    space = load_submission(name).path.parent / "tuning_search_space.json"
    return json.loads(space.read_text())[0] if space.exists() else None  # None: self-tuning


@pytest.fixture(scope="module")
def pilot(tmp_path_factory):
    """A linear_decay run: a baseline of its own and the pilot that refined reads."""
    root = tmp_path_factory.mktemp("pilot")
    result = run_trial(TrialConfig(workload="mnist1d", submission="linear_decay", hyperparameters=first_point("linear_decay"), experiment_dir=root))
    return root, result


@pytest.mark.slow
@pytest.mark.parametrize("name", BASELINES)
def test_baseline_reaches_the_mnist1d_target(name, pilot, tmp_path):
    pilot_root, pilot_result = pilot
    if name == "linear_decay":
        result = pilot_result
        assert (Path(result.trial_dir) / "submission_metrics.jsonl").is_file()
    else:
        point = first_point(name)
        if name == "refined":
            point = {**point, "pilot_experiment_dir": str(pilot_root)}
        result = run_trial(TrialConfig(workload="mnist1d", submission=name, hyperparameters=point, experiment_dir=tmp_path))
    assert result.status == REACHED, (result.status, result.stop_reason, result.best_validation, result.error)
