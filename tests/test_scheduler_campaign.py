"""Campaign planning: rulesets, studies x trials, seeds, budgets (nothing is trained)."""

from __future__ import annotations

import pytest

from algoperf.campaign.plan import SELF_TUNING_BUDGET_FACTOR, plan_trials, run_local, trial_seed
from algoperf.submission.loading import SubmissionError, load_submission


@pytest.fixture(scope="module")
def nadamw():
    return load_submission("nadamw")


SPACE = {"learning_rate": {"min": 1e-4, "max": 1e-1, "scaling": "log"}, "one_minus_beta1": {"min": 0.02, "max": 0.2},
         "beta2": {"feasible_points": [0.99, 0.999]}, "warmup_factor": {"feasible_points": [0.05]},
         "weight_decay": {"min": 0.0, "max": 0.1}}


def test_external_tuning_splits_distinct_points_into_studies(write_submission, tmp_path) -> None:
    folder = write_submission("from algoperf.submissions.nadamw.submission import *\n", search_space=SPACE)
    configs = plan_trials(load_submission(folder), ["mnist1d", "mnist1d_gelu"], studies=3, trials=5, seed=7,
                          experiment_dir=tmp_path)
    assert len(configs) == 2 * 3 * 5
    mnist = [c for c in configs if c.workload == "mnist1d"]
    assert [(c.study_index, c.trial_index) for c in mnist[:6]] == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 1)]
    points = [tuple(sorted(c.hyperparameters.items())) for c in mnist]
    assert len(set(points)) == 15  # every trial of every study its own quasi-random point
    assert all(1e-4 <= c.hyperparameters["learning_rate"] <= 1e-1 for c in mnist)
    # Each workload gets the same points, so workloads are tuned alike.
    gelu = [c for c in configs if c.workload == "mnist1d_gelu"]
    assert [c.hyperparameters for c in gelu] == [c.hyperparameters for c in mnist]
    assert len({c.seed for c in mnist}) == 15 and all(c.budget_factor == 1.0 for c in configs)
    assert len({c.path for c in configs}) == 30 and all("study_" in str(c.path) for c in configs)


def test_a_list_of_points_is_taken_in_order_by_every_study(nadamw) -> None:
    configs = plan_trials(nadamw, ["mnist1d"], studies=2, trials=5)
    first, second = configs[:5], configs[5:]
    assert [c.hyperparameters for c in first] == [c.hyperparameters for c in second]
    assert len({tuple(sorted(c.hyperparameters.items())) for c in first}) == 5
    assert {c.seed for c in first}.isdisjoint({c.seed for c in second})


def test_same_campaign_seed_same_trials_other_seed_other_trials(nadamw, tmp_path) -> None:
    def plan(seed):
        return [(c.hyperparameters, c.seed) for c in plan_trials(nadamw, ["mnist1d"], studies=2, trials=3, seed=seed)]

    assert plan(1) == plan(1)
    assert plan(1) != plan(2)
    assert trial_seed(0, 0, 0) != trial_seed(0, 0, 1) != trial_seed(0, 1, 0)


def test_self_tuning_repeats_without_hyperparameters_on_a_larger_budget(nadamw) -> None:
    configs = plan_trials(nadamw, ["mnist1d"], ruleset="self", studies=5, trials=4)
    assert len(configs) == 5
    assert all(c.hyperparameters is None and c.trial_index == 1 for c in configs)
    assert [c.study_index for c in configs] == [0, 1, 2, 3, 4]
    assert all(c.budget_factor == SELF_TUNING_BUDGET_FACTOR == 1.5 for c in configs)
    assert {c.budget_factor for c in plan_trials(nadamw, ["mnist1d"], ruleset="self", budget_factor=2.0)} == {2.0}
    assert plan_trials(nadamw, ["mnist1d"], ruleset="self")[0].ruleset == "self"


def test_bad_campaigns_are_refused_with_the_option_named(nadamw, write_submission) -> None:
    with pytest.raises(ValueError, match="unknown ruleset 'open'"):
        plan_trials(nadamw, ["mnist1d"], ruleset="open")
    with pytest.raises(ValueError, match="--studies and --trials"):
        plan_trials(nadamw, ["mnist1d"], trials=0)
    with pytest.raises(ValueError, match="--budget-factor"):
        plan_trials(nadamw, ["mnist1d"], budget_factor=0)
    spaceless = load_submission(write_submission("from algoperf.submissions.nadamw.submission import *\n"))
    with pytest.raises(SubmissionError, match="external tuning needs hyperparameters"):
        plan_trials(spaceless, ["mnist1d"])


def test_local_run_skips_finished_trials(nadamw, tmp_path) -> None:
    from algoperf.runner.trial_log import TrialWriter

    configs = plan_trials(nadamw, ["mnist1d"], trials=2, experiment_dir=tmp_path, max_steps=1)
    done = {"status": "missed", "workload": "mnist1d"}
    for config in configs:
        TrialWriter(config.path).write_result(done)
    skipped = []
    assert run_local(configs, nadamw, on_skip=lambda c, d: skipped.append(c.trial_index)) == [done, done]
    assert skipped == [1, 2]
