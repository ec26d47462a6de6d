"""One rule decides whether a target is reached, wherever it is asked (issue #24, item 2)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from algoperf import spec, target_rule, target_setting
from algoperf.scoring.errors import ScoringError
from algoperf.scoring.table import first_hit
from algoperf.scoring.targets import WorkloadTarget, higher_is_better

# (metric, target, a value on the good side, a value on the bad side)
CASES = [
    ("accuracy", 0.9, 0.95, 0.85),
    ("mean_average_precision", 0.28, 0.3, 0.2),
    ("ssim", 0.72, 0.73, 0.7),
    ("bleu", 30.0, 31.0, 29.0),
    ("loss", 0.12, 0.11, 0.13),
    ("wer", 0.08, 0.07, 0.09),
    ("ppl", 5.0, 4.0, 6.0),
    ("ce_loss", 3.3, 3.2, 3.4),
    ("error_rate", 0.2, 0.1, 0.3),
]


def _workload(metric: str, target: float) -> SimpleNamespace:
    return SimpleNamespace(target_metric_name=metric, validation_target_value=target, test_target_value=target)


@pytest.mark.parametrize(("metric", "target", "good", "bad"), CASES)
def test_a_value_exactly_at_the_target_reaches_it_for_runner_scoring_and_target_setting(metric, target, good, bad):
    key = f"validation/{metric}"
    # The runner: spec.Workload's check, which decides when a trial stops and its time to result.
    for value, expected in ((target, True), (good, True), (bad, False), (math.nan, False)):
        workload = _workload(metric, target)
        assert spec.Workload.has_reached_validation_target(workload, {key: value}) is expected
        assert spec.Workload.has_reached_test_target(workload, {f"test/{metric}": value}) is expected
        # Scoring: per value, and the first eval that reaches it.
        scored = WorkloadTarget(name="w", metric=metric, target=target, higher_is_better=higher_is_better(key))
        assert scored.reached(value) is expected
        assert target_rule.reached(key, value, target) is expected
    times, values = np.array([10.0, 20.0, 30.0]), np.array([bad, target, good])
    assert first_hit(times, values, target, higher_is_better(key)) == (20.0, 1.0)
    # Target setting: the first eval row that reaches the target.
    rows = [{key: bad, "step": 1}, {key: target, "step": 2}, {key: good, "step": 3}]
    assert target_setting._first_reach(rows, metric, target)["step"] == 2


def test_one_direction_list_for_every_caller():
    for metric, *_ in CASES:
        assert spec.higher_is_better(metric) == higher_is_better(f"validation/{metric}") == target_rule.higher_is_better(metric)


def test_a_metric_of_unknown_direction_is_refused_not_guessed():
    with pytest.raises(target_rule.UnknownMetricDirectionError, match="better high or low"):
        target_rule.higher_is_better("validation/widgets")
    with pytest.raises(ScoringError, match="target_metric_goal"):
        higher_is_better("validation/widgets")
    # A stated direction (targets JSON's target_metric_goal) needs no known word.
    assert target_rule.reached("validation/widgets", 2.0, 2.0, higher=True)
