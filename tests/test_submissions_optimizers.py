"""The baseline submissions: each loads, and each optimizer does the maths it claims."""

from __future__ import annotations

import ast
import functools
import json
import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import registry, spec
from algoperf.runner.trial import MetricsLogger
from algoperf.submission.loading import load_submission
from algoperf.submission.search_space import make_hyperparameters

BASELINES = [
    "adamw", "sgd_nesterov", "heavy_ball", "lion", "linear_decay", "refined",
    "schedule_free_adamw", "muon", "nadamw_self",
]
ALGOPERF_AND_SMALL_SUITE = [
    "criteo1tb", "fastmri", "imagenet_resnet", "imagenet_vit", "librispeech_conformer",
    "librispeech_deepspeech", "ogbg", "wmt", "mnist", "mnist1d", "charlm", "ctr", "molgraph",
    "translate", "mri", "speech",
]


@functools.cache
def module(name: str):
    return load_submission(name).module


def hp(**values):
    return make_hyperparameters(values)


class QuadraticWorkload:
    """A linear model with squared loss: enough of a workload for update_params."""

    step_hint = 100
    metrics_logger = None

    def __init__(self, types=None, output_key="head"):
        self._types = types
        self._output_key = output_key

    @property
    def model_params_types(self):
        return self._types

    def is_output_params(self, param_key):
        return param_key == self._output_key

    def model_fn(self, params, batch, model_state, mode, rng, update_batch_norm, dropout_rate=None):
        return batch["inputs"] @ params["w"], model_state

    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing=0.0):
        return {"summed": jnp.sum((logits_batch - label_batch) ** 2), "n_valid_examples": label_batch.shape[0]}


def quadratic_batch(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"inputs": jnp.asarray(rng.normal(size=(8, 3)), jnp.float32), "targets": jnp.asarray(rng.normal(size=8), jnp.float32)}


def step(sub, workload, params, state, hparams, batch, global_step=0):
    return sub.update_params(
        workload=workload, current_param_container=params, current_params_types=None, model_state=None,
        hyperparameters=hparams, batch=batch, loss_type=spec.LossType.MEAN_SQUARED_ERROR,
        optimizer_state=state, eval_results=[], global_step=global_step, rng=jax.random.PRNGKey(0),
    )


# --- every submission -------------------------------------------------------------------


@pytest.mark.parametrize("name", BASELINES)
def test_submission_loads_with_summary_search_space_and_readme(name):
    loaded = load_submission(name)
    assert loaded.name == name
    folder = loaded.path.parent
    summary = (ast.get_docstring(ast.parse(loaded.path.read_text())) or "").splitlines()[0]
    assert 20 < len(summary) <= 100, summary
    assert (folder / "__init__.py").exists()
    readme = (folder / "README.md").read_text()
    assert "tuned" in readme.lower() or "tuning" in readme.lower()
    if name == "nadamw_self":
        assert loaded.search_space is None  # self-tuning: nothing to search
    else:
        assert len(loaded.search_space.points(5)) == 5


def test_cli_lists_every_baseline():
    names = registry.submission_names()
    assert set(BASELINES) <= set(names)


@pytest.mark.parametrize("name", BASELINES)
def test_batch_sizes_cover_algoperf_and_small_suite(name):
    get = module(name).get_batch_size
    assert all(isinstance(get(w), int) and get(w) > 0 for w in ALGOPERF_AND_SMALL_SUITE)
    with pytest.raises(ValueError, match="no_such_workload"):
        get("no_such_workload")


# --- Lion ---------------------------------------------------------------------------------


def test_lion_matches_the_hand_computed_rule():
    """c = b1 m + (1-b1) g; p -= lr (sign(c) + wd p); m = b2 m + (1-b2) g, for 6 steps."""
    lion = module("lion")
    b1, b2, wd, peak, horizon = 0.9, 0.99, 0.3, 0.01, 10
    hparams = hp(learning_rate=peak, one_minus_beta1=1 - b1, beta2=b2, weight_decay=wd,
                 warmup_factor=0.0, decay_schedule="cosine")
    optimizer = lion.make_optimizer(hparams, horizon)
    rng = np.random.default_rng(0)
    p = rng.normal(size=5).astype(np.float32)
    params, state = jnp.asarray(p), optimizer.init(jnp.asarray(p))
    m = np.zeros(5)
    for t in range(6):
        g = rng.normal(size=5).astype(np.float32)
        lr = peak * 0.5 * (1 + math.cos(math.pi * t / horizon))  # no warmup: cosine from step 0
        c = b1 * m + (1 - b1) * g
        p = p - lr * (np.sign(c) + wd * p)
        m = b2 * m + (1 - b2) * g
        updates, state = optimizer.update(jnp.asarray(g), state, params)
        params = params + updates
        np.testing.assert_allclose(np.asarray(params), p, rtol=1e-6, atol=1e-7)


def test_lion_linear_schedule_and_bad_schedule_name():
    lion = module("lion")
    schedule = lion.learning_rate_schedule(hp(learning_rate=1.0, warmup_factor=0.1, decay_schedule="linear"), 100)
    assert [float(schedule(s)) for s in (0, 5, 10, 55, 100)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="decay_schedule"):
        lion.learning_rate_schedule(hp(learning_rate=1.0, warmup_factor=0.1, decay_schedule="step"), 100)


# --- linear decay ---------------------------------------------------------------------------


def test_linear_decay_schedule_values():
    schedule = module("linear_decay").learning_rate_schedule(hp(learning_rate=2.0, warmup_factor=0.1), 1000)
    expected = {0: 0.0, 50: 1.0, 100: 2.0, 550: 1.0, 999: 2.0 / 900, 1000: 0.0, 5000: 0.0}
    for step_, value in expected.items():
        assert float(schedule(step_)) == pytest.approx(value, abs=1e-6), step_


def test_linear_decay_logs_both_gradient_norms_every_step():
    sub = module("linear_decay")
    workload = QuadraticWorkload()
    workload.metrics_logger = MetricsLogger()
    hparams = hp(learning_rate=0.01, one_minus_beta1=0.1, beta2=0.999, weight_decay=0.0, warmup_factor=0.1)
    params = {"w": jnp.asarray([0.5, -1.0, 2.0])}
    state = sub.init_optimizer_state(workload, params, None, hparams, None)
    expected = []
    for t in range(3):
        batch = quadratic_batch(t)
        grads = jax.grad(lambda p, b=batch: jnp.mean((b["inputs"] @ p["w"] - b["targets"]) ** 2))(params)
        expected += [(t, "grad_norm_l2", float(jnp.linalg.norm(grads["w"]))), (t, "grad_norm_l1", float(jnp.abs(grads["w"]).sum()))]
        state, params, _ = step(sub, workload, params, state, hparams, batch, t)
    logged = {(s, n): v for s, n, v in workload.metrics_logger.drain() if n.startswith("grad_norm")}
    assert sorted(logged) == sorted((s, n) for s, n, _ in expected)
    np.testing.assert_allclose([logged[s, n] for s, n, _ in expected], [v for *_, v in expected], rtol=1e-5)


def test_linear_decay_stops_once_the_learning_rate_is_zero():
    sub = module("linear_decay")
    workload = QuadraticWorkload()
    with pytest.raises(spec.TrainingCompleteError):
        step(sub, workload, {"w": jnp.zeros(3)}, None, None, quadratic_batch(0), global_step=workload.step_hint)


# --- SGD family and AdamW -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sgd_nesterov", "heavy_ball"])
def test_sgd_schedule_warmup_linear_decay_then_floor(name):
    schedule = module(name).learning_rate_schedule(
        hp(learning_rate=1.0, warmup_factor=0.1, decay_steps_factor=0.5, end_factor=0.1), 1000
    )
    # Warmup over 100 steps, then 0.5 * 900 = 450 steps down to 0.1, then flat.
    for step_, value in {0: 0.0, 50: 0.5, 100: 1.0, 325: 0.55, 550: 0.1, 900: 0.1}.items():
        assert float(schedule(step_)) == pytest.approx(value, abs=1e-6), step_


@pytest.mark.parametrize(("name", "nesterov"), [("sgd_nesterov", True), ("heavy_ball", False)])
def test_sgd_momentum_matches_the_hand_computed_rule(name, nesterov):
    mu, wd, lr = 0.9, 0.01, 0.1
    hparams = hp(learning_rate=lr, one_minus_beta1=1 - mu, weight_decay=wd, warmup_factor=0.0,
                 decay_steps_factor=1.0, end_factor=1.0)  # a constant learning rate
    rng = np.random.default_rng(1)
    p = rng.normal(size=4)
    params, b = jnp.asarray(p, jnp.float32), np.zeros(4)
    # Through the AlgoPerf API: sgd_nesterov is heavy_ball's code with nesterov=True.
    state, update = module(name).init_optimizer_state(SimpleNamespace(step_hint=100), params, None, hparams, None)
    for _ in range(4):
        g = rng.normal(size=4)
        gw = g + wd * p
        b = mu * b + gw
        p = p - lr * ((mu * b + gw) if nesterov else b)
        updates, state = update(jnp.asarray(g, jnp.float32), state, params)
        params = params + updates
    np.testing.assert_allclose(np.asarray(params), p, rtol=1e-5)


def test_adamw_schedule_is_warmup_then_cosine():
    schedule = module("adamw").learning_rate_schedule(hp(learning_rate=1.0, warmup_factor=0.1), 1000)
    assert [float(schedule(s)) for s in (0, 50, 100, 550, 1000)] == pytest.approx([0, 0.5, 1, 0.5, 0], abs=1e-6)


# --- Schedule-Free ------------------------------------------------------------------------------


def test_schedule_free_eval_params_differ_and_training_resumes_from_y():
    sub = module("schedule_free_adamw")
    workload = QuadraticWorkload()
    hparams = hp(learning_rate=0.05, one_minus_beta1=0.1, beta2=0.999, weight_decay=0.0, warmup_factor=0.05,
                 weight_lr_power=2.0, label_smoothing=0.0, dropout_rate=0.0)
    init = np.array([0.5, -1.0, 2.0], np.float32)

    def run(eval_at: set[int]):
        params = {"w": jnp.asarray(init)}
        state = sub.init_optimizer_state(workload, params, None, hparams, None)
        structure = jax.tree.structure(state)  # constant, so a checkpoint at an eval restores y
        evals = []
        for t in range(8):
            state, params, _ = step(sub, workload, params, state, hparams, quadratic_batch(t), t)
            if t in eval_at:
                y = np.asarray(params["w"])
                state, params, _ = sub.prepare_for_eval(
                    workload=workload, current_param_container=params, current_params_types=None, model_state=None,
                    hyperparameters=hparams, loss_type=None, optimizer_state=state, eval_results=[],
                    global_step=t, rng=None,
                )
                assert jax.tree.structure(state) == structure
                # Copy now: the next step donates these buffers.
                evals.append((y, np.asarray(params["w"]), np.asarray(state[0].z["w"])))
                if t == 5:  # a second eval in a row gives the same x
                    _, again, _ = sub.prepare_for_eval(
                        workload=workload, current_param_container=params, current_params_types=None,
                        model_state=None, hyperparameters=hparams, loss_type=None, optimizer_state=state,
                        eval_results=[], global_step=t, rng=None,
                    )
                    np.testing.assert_array_equal(np.asarray(again["w"]), evals[-1][1])
        return np.asarray(params["w"]), evals

    reference, _ = run(set())
    with_evals, evals = run({2, 5})
    # Evaluating changes nothing about training: the final y is the no-eval run's y.
    np.testing.assert_array_equal(with_evals, reference)
    for y, x, z in evals:
        assert not np.allclose(x, y, atol=1e-4)  # the eval iterate is not the training iterate
        b1 = 0.9
        np.testing.assert_allclose(x, (y - (1 - b1) * z) / b1, rtol=1e-5, atol=1e-6)


def test_schedule_free_runs_on_its_defaults_when_hyperparameters_is_none():
    sub = module("schedule_free_adamw")
    params = {"w": jnp.ones(3)}
    state = sub.init_optimizer_state(QuadraticWorkload(), params, None, None, None)
    assert float(state[0].b1) == pytest.approx(1 - sub.DEFAULTS["one_minus_beta1"])
    state, params, _ = step(sub, QuadraticWorkload(), params, state, None, quadratic_batch(0))
    assert np.all(np.isfinite(np.asarray(params["w"])))
    point = json.loads((load_submission("schedule_free_adamw").path.parent / "tuning_search_space.json").read_text())[0]
    assert point == sub.DEFAULTS  # the first point of the search space is the default point


# --- Muon ---------------------------------------------------------------------------------------


def test_muon_sends_embeddings_output_and_vectors_to_adamw():
    muon = module("muon")
    types = {
        "embed": {"embedding": spec.ParameterType.EMBEDDING},
        "hidden": {"kernel": spec.ParameterType.WEIGHT, "bias": spec.ParameterType.BIAS},
        "conv": {"kernel": spec.ParameterType.CONV_WEIGHT},
        "head": {"kernel": spec.ParameterType.WEIGHT},
    }
    rng = np.random.default_rng(2)
    params = {
        "embed": {"embedding": jnp.asarray(rng.normal(size=(12, 6)), jnp.float32)},
        "hidden": {"kernel": jnp.asarray(rng.normal(size=(6, 6)), jnp.float32), "bias": jnp.zeros(6)},
        "conv": {"kernel": jnp.asarray(rng.normal(size=(3, 2, 4)), jnp.float32)},
        "head": {"kernel": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)},
    }
    workload = QuadraticWorkload(types=types)
    dims = muon.muon_dimension_numbers(workload, params)
    assert dims["embed"]["embedding"] is None and dims["head"]["kernel"] is None and dims["hidden"]["bias"] is None
    assert dims["hidden"]["kernel"].reduction_axis == 0 and dims["hidden"]["kernel"].output_axis == 1
    assert dims["conv"]["kernel"].reduction_axis == (0, 1) and dims["conv"]["kernel"].output_axis == 2

    # One step: the first NAdamW step (optax.contrib.muon's Adam branch is Nesterov) is
    # -lr (1 + b1 / (1 + b1)) g / |g|, one magnitude for every entry, for the excluded
    # matrices; Muon's update of the hidden matrix is orthogonal (singular values about 1).
    lr = 0.1
    hparams = hp(learning_rate=lr, adam_learning_rate=lr, beta=0.95, one_minus_beta1=0.1, beta2=0.999,
                 weight_decay=0.0, warmup_factor=0.0, decay_schedule="linear")
    optimizer = muon.make_optimizer(hparams, workload, params)
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    updates, _ = jax.jit(optimizer.update)(grads, optimizer.init(params), params)
    for key in ("embed", "head"):
        leaf = "embedding" if key == "embed" else "kernel"
        np.testing.assert_allclose(np.abs(np.asarray(updates[key][leaf])), lr * (1 + 0.9 / 1.9), rtol=1e-3)
    singular = np.linalg.svd(np.asarray(updates["hidden"]["kernel"]) / lr, compute_uv=False)
    assert singular.max() < 1.3 and singular.min() > 0.6
    assert np.std(np.abs(np.asarray(updates["hidden"]["kernel"]))) > 0.1 * lr  # not a sign update


def test_muon_on_mnist1d_excludes_the_output_layer():
    from algoperf.workloads.mnist1d.workload import Mnist1dWorkload

    workload = Mnist1dWorkload()
    params, _ = workload.init_model_fn(jax.random.PRNGKey(0))
    dims = module("muon").muon_dimension_numbers(workload, params)
    assert dims["output"]["kernel"] is None and dims["output"]["bias"] is None
    assert all(dims[c]["kernel"] is not None for c in ("conv1", "conv2", "conv3"))


# --- NAdamW self-tuning -------------------------------------------------------------------------


def test_nadamw_self_uses_the_published_point_and_ignores_none():
    sub = module("nadamw_self")
    point = sub.resolve_hyperparameters(None)
    assert point.learning_rate == pytest.approx(0.0017486, rel=1e-4)
    assert point.one_minus_beta1 == pytest.approx(0.0673, rel=1e-3)
    assert point.beta2 == pytest.approx(0.99552, rel=1e-5)
    assert point.weight_decay == pytest.approx(0.08122, rel=1e-4)
    assert point.warmup_factor == 0.02 and point.dropout_rate == 0.1
    assert sub.resolve_hyperparameters(hp(learning_rate=0.1)).learning_rate == 0.1
    workload = QuadraticWorkload()
    params = {"w": jnp.ones(3)}
    state = sub.init_optimizer_state(workload, params, None, None, None)
    _, params, _ = step(sub, workload, params, state, None, quadratic_batch(0))
    # First step of the warmup: lr = 0, so nothing moves yet; the schedule is the published one.
    np.testing.assert_array_equal(np.asarray(params["w"]), np.ones(3))
    schedule = sub.learning_rate_schedule(point, 1000)
    assert float(schedule(20)) == pytest.approx(point.learning_rate, rel=1e-6)
