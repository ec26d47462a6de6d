"""criteo1tb (DLRM-small) and variants: parameter counts, TSV parsing, loss, eval, a train step.

The 4,194,304 x 128 table is never allocated: counts come from ``jax.eval_shape``, and the
data tests use a subclass with a 64-row table.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algoperf import param_utils, spec
from algoperf.workloads.criteo1tb import WORKLOADS, input_pipeline
from algoperf.workloads.criteo1tb.model import DlrmSmall

# The spec sheet's counts (derived there by hand from layer shapes; ours agree exactly).
SHEET_PARAMS = {
    "criteo1tb": 539_267_457,
    "criteo1tb_layernorm": 539_275_137,
    "criteo1tb_resnet": 538_121_473,
    "criteo1tb_embed_init": 539_267_457,
}


@pytest.mark.parametrize("name", sorted(SHEET_PARAMS))
def test_param_count_matches_sheet(name):
    workload = WORKLOADS[name]()
    params, state = jax.eval_shape(lambda: workload.init_model_fn(jax.random.PRNGKey(0)))
    assert param_utils.num_params(params) == SHEET_PARAMS[name]
    assert params["embedding_table"].shape == (4_194_304, 128)
    assert workload.is_output_params("Dense_7") and params["Dense_7"]["kernel"].shape[1] == 1
    assert workload.model_params_types["embedding_table"] == spec.ParameterType.EMBEDDING
    assert state is None


def test_constants():
    base = WORKLOADS["criteo1tb"]
    assert base.num_eval_train_examples == 636 * 131_072
    assert (base.max_allowed_runtime_sec, base.eval_period_time_sec, base.step_hint) == (7_703, 120, 10_666)
    assert WORKLOADS["criteo1tb_resnet"].base_workload == "criteo1tb"
    assert base.data_source == "download"


def _fake_hash(b: bytes) -> int:
    """A deterministic stand-in for FarmHash (the test checks the plumbing, not the hash)."""
    return int.from_bytes(b[:8].ljust(8, b"\0"), "little") * 31 + len(b)


def _line(label: str, dense: list[str], cats: list[str]) -> str:
    return "\t".join([label, *dense, *cats]) + "\n"


def test_parse_defaults_log1p_and_float32_ids():
    cats = ["68fd1e64"] * 26
    cats[1] = ""  # empty -> '00000000'
    line1 = _line("1", ["3", "", "-1", "-5"] + ["0"] * 9, cats)
    out = input_pipeline.parse_lines([line1], _fake_hash)
    assert out["inputs"].shape == (1, 39) and out["inputs"].dtype == np.float32
    assert out["targets"].tolist() == [1.0]
    np.testing.assert_allclose(out["inputs"][0, :4], [np.log(4.0), 0.0, 0.0, 0.0], rtol=1e-6)
    assert out["inputs"][0, 13 + 1] == np.float32(_fake_hash(b"000000001") % 39043)
    assert out["inputs"][0, 13 + 2] == np.float32(_fake_hash(b"68fd1e642") % 17289)
    # An id above 2^24 rounds in float32 exactly as the reference's cast does.
    big = input_pipeline.parse_lines([line1], lambda b: 2**24 + 1)
    assert big["inputs"][0, 13] == 2**24  # column 0 (V = 39,884,406): 16,777,217 -> 16,777,216
    with pytest.raises(ValueError, match="40 tab-separated"):
        input_pipeline.parse_lines(["1\t2\n"], _fake_hash)


def test_loss_hand_computed():
    workload = WORKLOADS["criteo1tb"]()
    labels = jnp.array([1.0, 0.0, 1.0])
    logits = jnp.array([[0.0], [2.0], [5.0]])
    out = workload.loss_fn(labels, logits, jnp.array([1.0, 1.0, 0.0]))
    expected = [math.log(2.0), math.log(1.0 + math.exp(2.0))]
    np.testing.assert_allclose(out["per_example"][:2], expected, rtol=1e-6)
    assert float(out["per_example"][2]) == 0.0
    assert float(out["n_valid_examples"]) == 2.0
    np.testing.assert_allclose(out["summed"], sum(expected), rtol=1e-6)
    assert float(workload.loss_fn(labels, logits)["n_valid_examples"]) == 3.0


def test_missing_data_dir_is_a_clear_error(tmp_path):
    workload = WORKLOADS["criteo1tb"]()
    with pytest.raises(spec.DataNotFoundError, match="--data-dir"):
        workload._build_input_queue(jax.random.PRNGKey(0), "train", None, 8)
    with pytest.raises(spec.DataNotFoundError, match="day_"):
        workload._build_input_queue(jax.random.PRNGKey(0), "validation", str(tmp_path), 8)


class _TinyCriteo(WORKLOADS["criteo1tb"]):
    vocab_size = 64
    eval_batch_size = 4


def _write_days(root, rng) -> list[str]:
    """Day 23 as 36 tiny files (3 lines each) plus one train file; returns all lines of validation."""
    validation = []
    for name in [f"day_23_{i:02d}" for i in range(36)] + ["day_0_00"]:
        lines = []
        for _ in range(3):
            dense = [str(int(v)) if v >= 0 else "" for v in rng.integers(-1, 50, 13)]
            cats = [f"{v:08x}" for v in rng.integers(0, 2**32, 26)]
            lines.append(_line(str(int(rng.integers(0, 2))), dense, cats))
        (root / name).write_text("".join(lines))
        if name.startswith("day_23") and int(name[-2:]) >= 19:
            validation += lines
    return validation


def test_eval_matches_direct_mean_over_split(tmp_path):
    """Eval over 17 validation files (51 lines, batches of 4 with a padded tail) equals the
    mean per-example log-loss computed on all lines at once."""
    validation = _write_days(tmp_path, np.random.default_rng(0))
    workload = _TinyCriteo()
    workload._hash_fn = _fake_hash
    params, _ = workload.init_model_fn(jax.random.PRNGKey(1))
    result = workload._eval_model_on_split("validation", 51, 4, params, None, jax.random.PRNGKey(2), str(tmp_path))
    arrays = input_pipeline.parse_lines(validation, _fake_hash)
    logits, _ = workload.model_fn(params, arrays, None, spec.ForwardPassMode.EVAL, None, False)
    direct = workload.loss_fn(jnp.asarray(arrays["targets"]), logits)
    np.testing.assert_allclose(result["loss"], float(direct["summed"]) / 51, rtol=1e-5)
    batch = next(workload._build_input_queue(jax.random.PRNGKey(0), "train", str(tmp_path), 2))
    assert batch["inputs"].shape == (2, 39) and "weights" not in batch


def test_train_step_lowers_loss():
    model = DlrmSmall(vocab_size=64, embed_dim=8, mlp_bottom_dims=(16, 8), mlp_top_dims=(16, 8, 1))
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(32, 13)), rng.integers(0, 1000, (32, 26))], 1).astype(np.float32)
    y = jnp.asarray(rng.integers(0, 2, 32).astype(np.float32))
    params = model.init(jax.random.PRNGKey(0), x, train=False)["params"]
    opt = optax.adam(1e-2)

    def loss(p, key):
        z = model.apply({"params": p}, x, train=True, dropout_rate=0.1, rngs={"dropout": key})
        return jnp.mean(optax.sigmoid_binary_cross_entropy(z[:, 0], y))

    @jax.jit
    def step(p, s, key):
        value, grads = jax.value_and_grad(loss)(p, key)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, value

    state = opt.init(params)
    first = None
    for i in range(20):
        params, state, value = step(params, state, jax.random.PRNGKey(i))
        first = value if first is None else first
    assert float(loss(params, jax.random.PRNGKey(99))) < float(first)
