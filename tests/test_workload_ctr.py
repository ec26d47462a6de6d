"""Tests of the ctr workload (DLRM-small on Criteo-like logs from a fixed teacher)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, registry, spec
from algoperf.workloads.ctr import input_pipeline
from algoperf.workloads.ctr.workload import CtrLayerNormWorkload, CtrWorkload
from tests.workload_checks import nadamw_losses, workload_on_arrays

SMALL = {"train": 3000, "validation": 700, "test": 500}


@pytest.fixture(scope="module")
def small_arrays() -> dict[str, np.ndarray]:
    return input_pipeline.generate(sizes=SMALL)


@pytest.fixture(scope="module")
def workload(small_arrays):
    yield from workload_on_arrays(input_pipeline, CtrWorkload, small_arrays)


@pytest.fixture(scope="module")
def params(workload):
    return workload.init_model_fn(jax.random.PRNGKey(0))[0]


@pytest.fixture(scope="module")
def forward(workload):
    """Jitted eval-mode logits of an 'inputs' array."""
    mode = spec.ForwardPassMode.EVAL
    return jax.jit(lambda p, x: workload.model_fn(p, {"inputs": x}, None, mode, None, False)[0])


def _entropy(p: float) -> float:
    return float(-(p * np.log(p) + (1 - p) * np.log(1 - p)))


def test_registered_with_metadata():
    names = registry.workload_names()
    assert "ctr" in names and "ctr_layernorm" in names
    info = registry.workload_info("ctr_layernorm")
    assert info["base_workload"] == "ctr"
    for cls in (CtrWorkload, CtrLayerNormWorkload):
        assert cls.data_source == "generated"
        assert cls.target_metric_name == "loss"
        assert not spec.higher_is_better(f"validation/{cls.target_metric_name}")
        assert cls.loss_type == spec.LossType.SIGMOID_CROSS_ENTROPY
        # The target must be meaningfully better than predicting the base rate.
        assert cls.validation_target_value < 0.9 * _entropy(0.28)
        assert cls.max_allowed_runtime_sec > 0 and cls.step_hint > 0


def test_generated_data_shapes_ranges_and_structure(small_arrays):
    splits = input_pipeline.to_splits(small_arrays)
    for split, n in SMALL.items():
        x, y = splits[split]["inputs"], splits[split]["targets"]
        assert x.shape == (n, 39) and x.dtype == np.float32
        assert y.shape == (n,) and set(np.unique(y)) <= {0.0, 1.0}
    x = splits["train"]["inputs"]
    assert np.all(x[:, :13] >= 0)  # log1p(max(count, 0))
    ids = x[:, 13:]
    assert np.all(ids == np.round(ids))
    assert np.all(ids >= 0) and np.all(ids < np.array(input_pipeline.VOCAB_SIZES))
    # Zipf-like: the most frequent bucket of a large column is far above uniform.
    top = np.bincount(ids[:, 0].astype(int)).max() / len(ids)
    assert top > 20 / input_pipeline.VOCAB_SIZES[0]
    # Real structure: the teacher's probabilities beat the base rate by a wide margin.
    y, p = small_arrays["train_targets"], small_arrays["train_prob"].astype(np.float64)
    rate = y.mean()
    assert 0.15 < rate < 0.4
    teacher_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert teacher_loss < _entropy(rate) - 0.1


def test_generation_is_deterministic(small_arrays):
    again = input_pipeline.generate(sizes=SMALL)
    assert small_arrays.keys() == again.keys()
    for key in small_arrays:
        np.testing.assert_array_equal(small_arrays[key], again[key])
    other = input_pipeline.generate(seed=input_pipeline.SEED + 1, sizes={"train": 500})
    assert not np.array_equal(other["train_inputs"], small_arrays["train_inputs"][:500])


def test_shapes_and_param_types(workload, params, forward):
    types = workload.model_params_types
    assert types["embedding"]["embedding"] == spec.ParameterType.EMBEDDING
    assert workload.param_shapes["embedding"]["embedding"].shape_tuple == (
        sum(input_pipeline.VOCAB_SIZES),
        16,
    )
    assert types["output"]["kernel"] == spec.ParameterType.WEIGHT
    assert types["output"]["bias"] == spec.ParameterType.BIAS
    assert workload.is_output_params("output") and not workload.is_output_params("Dense_0")
    # bottom 13-64-32-16, top (16 + 27*28/2)-128-128-64-32-1, embedding sum(VOCAB_SIZES) x 16.
    bottom = 13 * 64 + 64 + 64 * 32 + 32 + 32 * 16 + 16
    top_in = 16 + 27 * 28 // 2
    top = top_in * 128 + 128 + 128 * 128 + 128 + 128 * 64 + 64 + 64 * 32 + 32 + 32 + 1
    assert param_utils.num_params(params) == bottom + top + sum(input_pipeline.VOCAB_SIZES) * 16
    logits = forward(params, jnp.asarray(workload.split_arrays("validation")["inputs"][:8]))
    assert logits.shape == (8,) and bool(jnp.all(jnp.isfinite(logits)))


def test_layernorm_variant_param_types():
    workload = CtrLayerNormWorkload(size=0.5)
    workload.init_model_fn(jax.random.PRNGKey(0))
    types = workload.model_params_types
    assert types["categorical_layer_norm"]["scale"] == spec.ParameterType.LAYER_NORM_SCALE
    assert types["LayerNorm_0"]["bias"] == spec.ParameterType.LAYER_NORM_BIAS
    # size=0.5 halves the embedding width.
    assert workload.param_shapes["embedding"]["embedding"].shape_tuple[1] == 8


def test_loss_hand_computed():
    workload = CtrWorkload()
    logits = jnp.array([0.0, 2.0, -1.0])
    labels = jnp.array([1.0, 0.0, 1.0])
    out = workload.loss_fn(labels, logits, mask_batch=jnp.array([1.0, 1.0, 0.0]))
    # -log s(0) = log 2; -log(1 - s(2)) = log(1 + e^2); the masked third is dropped.
    expected = [np.log(2.0), np.log1p(np.exp(2.0)), 0.0]
    np.testing.assert_allclose(out["per_example"], expected, rtol=1e-6)
    np.testing.assert_allclose(out["summed"], np.log(2.0) + np.log1p(np.exp(2.0)), rtol=1e-6)
    assert float(out["n_valid_examples"]) == 2.0
    # [B, 1]-shaped logits give the same answer (reshaped to [B]).
    out2 = workload.loss_fn(labels, logits[:, None])
    np.testing.assert_allclose(out2["summed"], sum(expected[:2]) + np.log1p(np.e), rtol=1e-6)


def test_dropout_rate_may_be_traced(workload, params, forward):
    batch = {"inputs": jnp.asarray(workload.split_arrays("train")["inputs"][:64])}

    @jax.jit
    def train_forward(params, rate, rng):
        mode = spec.ForwardPassMode.TRAIN
        return workload.model_fn(params, batch, None, mode, rng, True, dropout_rate=rate)[0]

    rng = jax.random.PRNGKey(1)
    plain = forward(params, batch["inputs"])
    np.testing.assert_allclose(train_forward(params, 0.0, rng), plain, rtol=1e-5, atol=1e-6)
    assert not np.allclose(train_forward(params, 0.5, rng), plain)


def test_train_step_lowers_loss(workload, params):
    arrays = workload.split_arrays("train")
    losses = nadamw_losses(workload, params, {k: jnp.asarray(v[:256]) for k, v in arrays.items()}, steps=5)
    assert losses[-1] < losses[0] - 0.05


def test_eval_model_keys_and_value(workload, params, forward):
    state = None
    metrics = workload.eval_model(256, params, state, jax.random.PRNGKey(0), None, None, 0)
    for prefix in ("train", "validation", "test"):
        assert f"{prefix}/loss" in metrics
    assert metrics["validation/num_examples"] == SMALL["validation"]
    # The padded, batched eval equals the plain mean over the whole split.
    val = workload.split_arrays("validation")
    logits, _ = workload.model_fn(
        params,
        {"inputs": jnp.asarray(val["inputs"])},
        state,
        spec.ForwardPassMode.EVAL,
        None,
        False,
    )
    expected = workload.loss_fn(jnp.asarray(val["targets"]), logits)
    np.testing.assert_allclose(
        metrics["validation/loss"], expected["summed"] / SMALL["validation"], rtol=1e-5
    )
