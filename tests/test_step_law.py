"""step_law: learning rate and batch size are the paper's formulas; other workloads fall back."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from algoperf.registry import get_workload
from algoperf.submissions.nadamw_self import submission as nadamw_self
from algoperf.submissions.step_law import submission as step_law


@pytest.mark.parametrize(("n", "d"), [(1e8, 1e10), (5e5, 3e6), (1e9, 1e11)])
def test_learning_rate_and_batch_are_the_formula(n, d):
    assert step_law.step_law_lr(n, d) == pytest.approx(1.79 * n**-0.713 * d**0.307, rel=1e-12)
    assert step_law.step_law_batch_tokens(d) == pytest.approx(0.58 * d**0.571, rel=1e-12)
    # a worked value: N = 1e8, D = 1e10 -> 1.79 * 10^(-5.704) * 10^(3.07)
    if (n, d) == (1e8, 1e10):
        assert step_law.step_law_lr(n, d) == pytest.approx(1.79 * 10 ** (-5.704 + 3.07))


def test_the_batch_is_the_fixed_point_of_b_of_d():
    for steps in (100, 891, 72_000):
        b = step_law.self_consistent_batch_tokens(steps)
        assert step_law.step_law_batch_tokens(steps * b) == pytest.approx(b, rel=1e-9)


def test_charlm_batch_and_lr_from_the_workload():
    workload = get_workload("charlm")
    params, _ = workload.init_model_fn(jax.random.PRNGKey(0))
    point = step_law.step_law_point(workload, params)
    from algoperf.workloads.charlm.input_pipeline import SEQ_LEN

    tokens = step_law.self_consistent_batch_tokens(workload.step_hint)
    assert point["batch_size"] == round(tokens / SEQ_LEN) == step_law.get_batch_size("charlm")
    # N counts every parameter but the embeddings and the output layer
    total = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
    embeds = sum(int(np.prod(x.shape)) for k, v in params.items() if "embed" in k or k == "output"
                 for x in jax.tree_util.tree_leaves(v))
    assert point["N"] == total - embeds
    d = workload.step_hint * point["batch_size"] * SEQ_LEN
    assert point["D"] == d
    assert point["learning_rate"] == pytest.approx(1.79 * point["N"] ** -0.713 * d**0.307)


def test_lm_batch_is_capped_by_what_fits():
    workload_default = 64  # lm's default batch (AlgoPerf's finewebedu_lm baselines)
    assert step_law.get_batch_size("lm") == step_law.BATCH_CAP * workload_default
    uncapped = step_law.self_consistent_batch_tokens(72_000) / 1024
    assert uncapped > step_law.BATCH_CAP * workload_default


def test_other_workloads_fall_back_to_nadamw_self():
    assert step_law.get_batch_size("mnist1d") == nadamw_self.get_batch_size("mnist1d")
    assert step_law.step_law_point(get_workload("mnist1d"), {}) is None


def test_schedule_warms_up_then_decays_to_the_floor():
    sched = step_law.learning_rate_schedule(0.04, 1000)
    assert float(sched(0)) == 0.0
    assert float(sched(50)) == pytest.approx(0.04)  # 5% of step_hint
    assert float(sched(1000)) == pytest.approx(step_law.FINAL_LR)
    assert not math.isnan(float(sched(2000)))
