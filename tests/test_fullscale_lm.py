"""The decoder-only LM workload: parameter parity, loss, the token format, one train step."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, registry, spec
from algoperf.workloads.lm import input_pipeline
from algoperf.workloads.lm.model import rope
from algoperf.workloads.lm.workload import LmWorkload, lm_cross_entropy

TINY = dict(vocab_size=64, dim=32, num_heads=4, num_layers=2, mlp_dim=64, seq_len=16)


def test_parameter_count_matches_the_spec_sheet():
    """252,815,372 (sheet §3.2, hand-derived, equal to ours): embedding 51,463,168 +
    12 x (attention 4,194,304 + MLP 12,582,912 + 2 norms 2,048 + attn_scale 1) + final 1,024."""
    w = registry.get_workload("lm")
    params, _ = jax.eval_shape(lambda: w.init_model_fn(jax.random.PRNGKey(0)))
    assert param_utils.num_params(params) == 252_815_372
    assert params["block_0"]["Attention_0"]["attn_scale"].shape == ()
    assert w.is_output_params("embed") and w.target_metric_name == "ppl"
    assert not spec.higher_is_better("validation/ppl") and w.num_test_examples == 0


def test_rope_rotates_adjacent_pairs():
    x = jnp.zeros((1, 3, 1, 4)).at[..., 0].set(1.0).at[..., 2].set(1.0)
    y = np.asarray(rope(x, theta=100.0))[0, :, 0]
    # Position p: pair 0 rotated by p, pair 1 by p / 10 (theta^(-2/4) = 0.1).
    for p in range(3):
        np.testing.assert_allclose(y[p], [math.cos(p), math.sin(p), math.cos(p / 10), math.sin(p / 10)], atol=1e-6)


def test_loss_with_smoothing_and_weights():
    logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]]]))
    targets = jnp.array([[0, 2]])
    out = lm_cross_entropy(targets, logits, jnp.array([[1.0, 0.0]]), label_smoothing=0.3)
    expected = -(0.7 * math.log(0.5) + 0.1 * (math.log(0.5) + 2 * math.log(0.25)))
    assert float(out["summed"]) == pytest.approx(expected, rel=1e-5)
    assert float(out["n_valid_examples"]) == 1


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    # A learnable corpus: documents counting up modulo 60.
    docs = [[int((s + i) % 60) for i in range(int(rng.integers(20, 80)))] for s in rng.integers(0, 60, 200)]
    pq.write_table(pa.table({"input_ids": docs}), root / "corpus.parquet")
    meta = input_pipeline.prepare(root / "corpus.parquet", root / "lm", vocab_size=64, eot_id=63)
    assert meta["num_tokens"]["train"] + meta["num_tokens"]["validation"] == sum(len(d) + 1 for d in docs)
    return str(root)


def test_prepare_writes_the_documented_format(data_dir):
    meta = json.loads((input_pipeline._root(data_dir) / "meta.json").read_text())
    assert meta["format"] == input_pipeline.FORMAT and meta["dtype"] == "uint16"
    windows = input_pipeline.windows(data_dir, "train", 16)
    assert windows.shape[1] == 17 and windows.max() <= 63
    batch = next(input_pipeline.eval_batches(windows, 4, 3))
    np.testing.assert_array_equal(batch["targets"][0], windows[0, 1:])
    assert batch["weights"][:, 0].tolist() == [1, 1, 1, 0]


def test_missing_data_dir_is_a_clear_error(tmp_path):
    w = LmWorkload()
    with pytest.raises(spec.DataNotFoundError, match="--data-dir"):
        next(w._build_input_queue(jax.random.PRNGKey(0), "train", None, 2))
    with pytest.raises(spec.DataNotFoundError, match="meta.json"):
        next(w._build_input_queue(jax.random.PRNGKey(0), "train", str(tmp_path), 2))


@pytest.mark.slow  # ~25 s wall on 2 busy cores (jit of a tiny LM)
def test_train_step_lowers_loss_and_eval_reports_ppl(data_dir):
    w = LmWorkload(config_overrides=TINY)
    params, state = w.init_model_fn(jax.random.PRNGKey(0))
    batch = next(w._build_input_queue(jax.random.PRNGKey(1), "train", data_dir, 8))

    def loss(p):
        logits, _ = w.model_fn(p, batch, state, spec.ForwardPassMode.TRAIN, None, False)
        out = w.loss_fn(batch["targets"], logits, batch["weights"])
        return out["summed"] / out["n_valid_examples"]

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    before, grad = value_and_grad(params)
    after, _ = value_and_grad(jax.tree.map(lambda x, g: x - 0.5 * g, params, grad))
    assert float(after) < float(before)
    result = w._eval_model_on_split("validation", 8, 4, params, state, None, data_dir)
    assert result["ppl"] == pytest.approx(math.exp(result["loss"]), rel=1e-6)
    assert result["loss"] == pytest.approx(math.log(64), rel=0.2)  # near-uniform at init
