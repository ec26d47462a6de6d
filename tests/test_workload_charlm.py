"""The charlm workload: byte-level LM on CPython's pydoc topics, metric perplexity."""

from __future__ import annotations

import functools
import math
from pydoc_data.topics import topics

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, registry, spec
from algoperf.losses import token_cross_entropy
from algoperf.workloads.charlm import input_pipeline
from algoperf.workloads.charlm.workload import CharlmWorkload
from tests.workload_checks import nadamw_losses

L = input_pipeline.SEQ_LEN


@pytest.fixture(scope="module")
def workload():
    w = registry.get_workload("charlm")
    params, state = w.init_model_fn(jax.random.PRNGKey(0))
    return w, params, state


@pytest.fixture(scope="module")
def forward(workload):
    """Jitted model_fn: forward(params, inputs, train, rate, rng) -> logits; rate is traced
    (as in a submission's jitted step) unless None."""
    w = workload[0]

    @functools.partial(jax.jit, static_argnums=(2,))
    def fn(params, inputs, train, rate, rng):
        mode = spec.ForwardPassMode.TRAIN if train else spec.ForwardPassMode.EVAL
        return w.model_fn(params, {"inputs": inputs}, None, mode, rng, train, dropout_rate=rate)[0]

    return fn


def test_registered_with_a_lower_is_better_target():
    assert {"charlm", "charlm_post_ln"} <= set(registry.workload_names())
    info = registry.workload_info("charlm_post_ln")
    assert info["base_workload"] == "charlm" and info["data_source"] == "real"
    assert not spec.higher_is_better("validation/ppl")
    assert spec.reaches_target(4.0, 5.0, "validation/ppl") and not spec.reaches_target(
        6.0, 5.0, "validation/ppl"
    )


def test_topics_split_is_fixed_disjoint_and_complete():
    split = input_pipeline.split_topics(topics)
    names = [n for v in split.values() for n in v]
    assert sorted(names) == sorted(topics) and len(set(names)) == len(names)
    total = sum(len(t.encode()) for t in topics.values())
    for held_out in ("validation", "test"):
        size = sum(len(topics[n].encode()) for n in split[held_out])
        assert 0.08 * total < size < 0.14 * total
    assert split == input_pipeline.split_topics(dict(reversed(list(topics.items()))))  # order-free
    assert split != input_pipeline.split_topics(topics, seed=1)


def test_windows_are_next_byte_pairs_and_deterministic():
    data = input_pipeline.load()
    again = input_pipeline._load_cached.__wrapped__(L)  # rebuilt from scratch
    for name in ("train", "validation", "test"):
        x, y = data[name]["inputs"], data[name]["targets"]
        assert x.dtype == np.int32 and x.shape == y.shape and x.shape[1] == L and len(x) > 300
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
        np.testing.assert_array_equal(x, again[name]["inputs"])
        np.testing.assert_array_equal(y, again[name]["targets"])
    w = input_pipeline.windows(np.arange(10), seq_len=3, stride=2)
    np.testing.assert_array_equal(w["inputs"], [[0, 1, 2], [2, 3, 4], [4, 5, 6], [6, 7, 8]])
    np.testing.assert_array_equal(w["targets"], [[1, 2, 3], [3, 4, 5], [5, 6, 7], [7, 8, 9]])
    # The first validation window is the start of the first validation topic, as UTF-8.
    first = sorted(input_pipeline.split_topics(topics)["validation"])[0]
    assert bytes(data["validation"]["inputs"][0].astype(np.uint8)) == topics[first].encode()[:L]


def test_shapes_param_count_and_types(workload, forward):
    w, params, _ = workload
    assert param_utils.num_params(params) == 136_704
    types = w.model_params_types
    assert types["embed"]["embedding"] == spec.ParameterType.EMBEDDING
    assert types["pos_embed"]["embedding"] == spec.ParameterType.EMBEDDING
    assert types["block_0"]["attention"]["query"]["kernel"] == spec.ParameterType.ATTENTION_Q
    assert types["block_1"]["attention"]["out"]["kernel"] == spec.ParameterType.ATTENTION_OUT
    assert types["block_0"]["ln1"]["scale"] == spec.ParameterType.LAYER_NORM_SCALE
    assert types["ln_final"]["bias"] == spec.ParameterType.LAYER_NORM_BIAS
    assert types["block_0"]["mlp_in"]["kernel"] == spec.ParameterType.WEIGHT
    assert types["output"]["bias"] == spec.ParameterType.BIAS
    assert w.param_shapes["output"]["kernel"] == spec.ShapeTuple((64, 256))
    assert w.is_output_params("output") and not w.is_output_params("embed")
    logits = forward(
        params, jnp.asarray(input_pipeline.load()["validation"]["inputs"][:2]), False, None, None
    )
    assert logits.shape == (2, L, 256) and logits.dtype == jnp.float32


def test_size_knob_and_post_ln_variant():
    dummy = jnp.zeros((1, L), jnp.int32)
    big = CharlmWorkload(size=2.0).model
    params = jax.eval_shape(big.init, jax.random.PRNGKey(0), dummy)["params"]
    assert params["embed"]["embedding"].shape == (256, 128) and "block_2" in params  # 3 layers
    assert param_utils.num_params(params) > 3 * 136_704
    post = registry.get_workload("charlm_post_ln").model
    params = jax.eval_shape(post.init, jax.random.PRNGKey(0), dummy)["params"]
    assert "ln_final" not in params and "ln2" in params["block_1"]


def test_attention_is_causal(workload, forward):
    params = workload[1]
    x = jnp.asarray(input_pipeline.load()["validation"]["inputs"][:2])
    changed = x.at[:, 40:].set((x[:, 40:] + 7) % 256)
    a, b = forward(params, x, False, None, None), forward(params, changed, False, None, None)
    np.testing.assert_allclose(a[:, :40], b[:, :40], atol=1e-5)
    assert not np.allclose(a[:, 40:], b[:, 40:], atol=1e-3)


def test_dropout_rate_is_honoured(workload, forward):
    params = workload[1]
    x = jnp.asarray(input_pipeline.load()["validation"]["inputs"][:2])
    rng = jax.random.PRNGKey(3)
    ev = forward(params, x, False, 0.5, rng)
    default = forward(params, x, True, None, rng)
    zero = forward(params, x, True, 0.0, rng)
    dropped = forward(params, x, True, 0.5, rng)
    np.testing.assert_allclose(ev, default, atol=1e-5)  # default rate 0: no dropout
    np.testing.assert_allclose(ev, zero, atol=1e-5)
    assert not np.allclose(ev, dropped, atol=1e-3)


def test_loss_and_perplexity_by_hand():
    # Two tokens whose targets get probability 1/2 and 1/8 out of 4 classes:
    # NLL = ln 2 + ln 8 = 4 ln 2, mean 2 ln 2, perplexity exp(2 ln 2) = 4.
    probs = np.array([[[0.5, 0.25, 0.125, 0.125], [0.125, 0.125, 0.25, 0.5]]])
    logits, labels = jnp.log(jnp.asarray(probs)), jnp.array([[0, 0]])
    out = token_cross_entropy(labels, logits)
    assert float(out["summed"]) == pytest.approx(math.log(2) + math.log(8), rel=1e-6)
    assert float(out["n_valid_examples"]) == 2 and out["per_example"].shape == (1, 2)
    w = CharlmWorkload()
    metrics = w.reduce_eval_outputs(
        [{"loss": np.float32(out["summed"]), "num_tokens": np.float32(2.0)}]
    )
    assert metrics["ppl"] == pytest.approx(4.0, rel=1e-5)
    assert metrics["loss"] == pytest.approx(2 * math.log(2), rel=1e-5)
    # A diverged model (mean NLL beyond exp's range) gives a huge perplexity, not an OverflowError.
    diverged = w.reduce_eval_outputs([{"loss": np.float32(2000.0), "num_tokens": np.float32(1.0)}])
    assert diverged["ppl"] > 1e300 and diverged["loss"] == 2000.0
    # A masked row counts for nothing; smoothing eps puts eps/V on every class.
    two_rows = jnp.concatenate([logits, jnp.zeros_like(logits)])
    masked = token_cross_entropy(jnp.zeros((2, 2), jnp.int32), two_rows, jnp.array([1.0, 0.0]))
    assert float(masked["summed"]) == pytest.approx(float(out["summed"]), rel=1e-6)
    assert float(masked["n_valid_examples"]) == 2
    eps = 0.2
    smooth = token_cross_entropy(labels, logits, label_smoothing=eps)
    log_p = np.log(probs[0])
    expected = sum(-(1 - eps) * log_p[t, 0] - eps / 4 * log_p[t].sum() for t in range(2))
    assert float(smooth["summed"]) == pytest.approx(expected, rel=1e-5)


def test_a_jitted_nadamw_step_lowers_the_loss(workload):
    w, params, state = workload
    split = input_pipeline.load()["train"]
    losses = nadamw_losses(w, params, {k: jnp.asarray(v[:16]) for k, v in split.items()}, steps=6, model_state=state)
    assert losses[0] == pytest.approx(math.log(256), rel=0.02)  # small output init: near uniform
    assert losses[-1] < losses[0] - 0.5


def test_eval_model_keys_and_values(workload):
    w, params, state = workload
    result = w.eval_model(256, params, state, jax.random.PRNGKey(0), None, None, 0)
    for split in ("train", "validation", "test"):
        assert 200 < result[f"{split}/ppl"] < 300  # an untrained model: close to 256 classes
        assert result[f"{split}/ppl"] == pytest.approx(math.exp(result[f"{split}/loss"]))
    assert result["validation/num_examples"] == w.num_validation_examples
    assert result["test/num_examples"] == w.num_test_examples
