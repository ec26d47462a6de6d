"""Campaign planning and local execution: rulesets, seeds, skip-if-finished, failed reruns."""

from __future__ import annotations

import pytest

from algoperf.campaign.plan import finished_result, plan_trials, run_local
from algoperf.runner.types import FAILED, REACHED
from algoperf.submission.loading import load_submission

FLAKY = """
import os
def get_batch_size(workload_name): return 32
def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng): return None
def update_params(workload, current_param_container, current_params_types, model_state,
                  hyperparameters, batch, loss_type, optimizer_state, eval_results, global_step, rng):
    if os.environ.get("FLAKY_FAIL") == "1":
        raise RuntimeError("bug in my optimizer")
    return optimizer_state, current_param_container, model_state
def data_selection(workload, input_queue, optimizer_state, current_param_container, model_state,
                   hyperparameters, global_step, rng):
    return next(input_queue)
"""


def test_external_plan_splits_points_into_studies(tmp_path):
    sub = load_submission("nadamw")
    configs = plan_trials(sub, ["mnist1d"], studies=2, trials=3, seed=5, experiment_dir=tmp_path)
    assert [(c.study_index, c.trial_index) for c in configs] == [(s, t) for s in range(2) for t in (1, 2, 3)]
    points = sub.search_space.points(6, seed=5)
    assert [c.hyperparameters for c in configs] == points
    assert len({c.seed for c in configs}) == 6
    again = plan_trials(sub, ["mnist1d"], studies=2, trials=3, seed=5, experiment_dir=tmp_path)
    assert [c.seed for c in again] == [c.seed for c in configs]


def test_self_tuning_plan_has_no_hyperparameters_and_a_longer_budget(tmp_path):
    configs = plan_trials(load_submission("nadamw_self"), ["mnist1d"], ruleset="self", studies=3, experiment_dir=tmp_path)
    assert len(configs) == 3 and all(c.hyperparameters is None for c in configs)
    assert all(c.budget_factor == 1.5 for c in configs)


def test_finished_trials_are_skipped_and_failed_ones_rerun(tmp_path, write_submission, monkeypatch):
    sub = load_submission(write_submission(FLAKY, name="flaky"))
    configs = plan_trials(sub, ["mnist1d"], experiment_dir=tmp_path, hyperparameters={}, max_steps=3)
    monkeypatch.setenv("FLAKY_FAIL", "1")
    assert run_local(configs, sub)[0].status == FAILED
    monkeypatch.setenv("FLAKY_FAIL", "0")
    result = run_local(configs, sub)[0]
    assert result.status != FAILED and result.global_step == 3
    archived = list((configs[0].path.parent / ".failed").iterdir())
    assert len(archived) == 1 and (archived[0] / "trial_result.json").exists()
    skipped = []
    run_local(configs, sub, on_skip=lambda config, done: skipped.append(done["status"]))
    assert skipped == [result.status] and finished_result(configs[0])["global_step"] == 3


@pytest.mark.slow  # training to target (25 s on a busy core); the fast tier has test_trial's nadamw run
def test_nadamw_self_reaches_mnist1d_target_under_self_tuning(tmp_path):
    sub = load_submission("nadamw_self")
    configs = plan_trials(sub, ["mnist1d"], ruleset="self", experiment_dir=tmp_path)
    assert run_local(configs, sub)[0].status == REACHED
