"""Tests of the molgraph workload (graph network on generated molecule-like graphs)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, registry, spec
from algoperf.workloads.molgraph import input_pipeline
from algoperf.workloads.molgraph.metrics import average_precision, mean_average_precision
from algoperf.workloads.molgraph.workload import MolgraphGeluWorkload, MolgraphWorkload
from tests.workload_checks import nadamw_losses, workload_on_arrays

SMALL = {"train": 300, "validation": 120, "test": 80}


@pytest.fixture(scope="module")
def small_arrays() -> dict[str, np.ndarray]:
    return input_pipeline.generate(sizes=SMALL)


@pytest.fixture(scope="module")
def workload(small_arrays):
    yield from workload_on_arrays(input_pipeline, MolgraphWorkload, small_arrays)


@pytest.fixture(scope="module")
def params(workload):
    return workload.init_model_fn(jax.random.PRNGKey(0))[0]


@pytest.fixture(scope="module")
def forward(workload):
    """Jitted eval-mode logits of a batch."""
    mode = spec.ForwardPassMode.EVAL
    return jax.jit(lambda p, b: workload.model_fn(p, b, None, mode, None, False)[0])


def test_registered_with_metadata():
    assert {"molgraph", "molgraph_gelu"} <= set(registry.workload_names())
    assert registry.workload_info("molgraph_gelu")["base_workload"] == "molgraph"
    for cls in (MolgraphWorkload, MolgraphGeluWorkload):
        assert cls.data_source == "generated"
        assert cls.target_metric_name == "mean_average_precision"
        assert spec.higher_is_better(f"validation/{cls.target_metric_name}")
        assert cls.loss_type == spec.LossType.SIGMOID_CROSS_ENTROPY
        assert 0.0 < cls.validation_target_value < 1.0


def test_average_precision_hand_computed():
    # Ranked: +, -, +, -. AP = 1/2 * 1 + 1/2 * 2/3.
    ap = average_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))
    assert ap == pytest.approx(0.5 + 0.5 * 2 / 3)
    # A tie at the top enters together: P = 1/2 at R = 1/2, then P = 2/3 at R = 1.
    ap = average_precision(np.array([1, 0, 1]), np.array([0.5, 0.5, 0.2]))
    assert ap == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert average_precision(np.array([1, 1, 0]), np.array([3.0, 2.0, 1.0])) == 1.0
    assert np.isnan(average_precision(np.array([0, 0]), np.array([0.1, 0.2])))


def test_average_precision_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(5):
        labels = rng.random(200) < 0.3
        scores = np.round(rng.normal(size=200) + labels, 1)  # rounding makes ties
        ours = average_precision(labels, scores)
        assert ours == pytest.approx(metrics.average_precision_score(labels, scores), abs=1e-12)


def test_mean_average_precision_masks_and_skips_tasks():
    labels = np.array([[1, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 1, 1]], np.float64)
    scores = np.array(
        [[0.9, 0.1, 0.2, 0.3], [0.2, 0.2, 0.1, 0.4], [0.7, 0.3, 0.3, 0.5], [0.1, 0.4, 0.4, 0.6]]
    )
    mask = np.ones_like(labels)
    # task 0: both positives first, AP 1; task 1: no positive, skipped; task 2 (all
    # labelled): +, -, +, - in score order, AP 1/2 + 1/2 * 2/3; task 3: the same, 5/6.
    five_sixths = 0.5 + 0.5 * 2 / 3
    assert mean_average_precision(labels, scores, mask) == pytest.approx(
        (1 + five_sixths + five_sixths) / 3
    )
    mask[0, 2] = 0  # task 2 keeps rows 1-3: its one positive scores highest, AP 1
    assert mean_average_precision(labels, scores, mask) == pytest.approx((1 + 1 + five_sixths) / 3)
    scores[3, 0] = 0.95  # a negative now ranks first in task 0: AP 1/2 * 1/2 + 1/2 * 2/3
    expected = np.mean([0.5 * 0.5 + 0.5 * 2 / 3, 1.0, five_sixths])
    assert mean_average_precision(labels, scores, mask) == pytest.approx(expected)
    assert np.isnan(mean_average_precision(labels, scores, np.zeros_like(mask)))


def test_generated_graphs_are_valid_molecules(small_arrays):
    splits = input_pipeline.to_splits(small_arrays)
    train = splits["train"]
    n_el = len(input_pipeline.ELEMENTS)
    for g in range(SMALL["train"]):
        nodes, node_mask = train["inputs"][g], train["node_mask"][g]
        edge_mask = train["edge_mask"][g].astype(bool)
        s, r = train["senders"][g][edge_mask], train["receivers"][g][edge_mask]
        n = int(node_mask.sum())
        assert 6 <= n <= input_pipeline.MAX_NODES and np.all(node_mask[:n] == 1)
        assert np.all(nodes[n:] == 0)
        assert np.all(s < n) and np.all(r < n) and np.all(s != r)
        # Bonds are stored in both directions, consecutively.
        np.testing.assert_array_equal(s[0::2], r[1::2])
        # Degree feature = number of bonds.
        degree = np.bincount(s, minlength=n)
        np.testing.assert_array_equal(np.argmax(nodes[:n, n_el : n_el + 5], 1), degree)
        # Valence = bond orders + hydrogens, in the Kekule count: an atom with k >= 2
        # aromatic bonds uses k + 1 of its valence (one of them is double).
        bond_type = np.argmax(train["edge_features"][g][edge_mask][:, :4], 1)
        plain = np.bincount(s, weights=np.array([1, 2, 3, 0])[bond_type], minlength=n)
        aromatic = np.bincount(s, weights=bond_type == 3, minlength=n)
        used = plain + np.where(aromatic > 0, aromatic + 1, 0)
        hydrogens = np.argmax(nodes[:n, n_el + 5 : n_el + 9], 1)
        valence = input_pipeline.VALENCE[np.argmax(nodes[:n, :n_el], 1)]
        np.testing.assert_array_equal(used + hydrogens, valence)
        assert np.all((aromatic > 0) == (nodes[:n, -2] == 1))
    # Not degenerate: several rings, hetero atoms, varied sizes.
    assert train["inputs"][..., -1].sum() > SMALL["train"]  # ring atoms
    assert train["inputs"][..., 1].sum() > 0.1 * SMALL["train"]  # nitrogen
    assert len(np.unique(train["node_mask"].sum(1))) > 8


def test_labels_follow_the_teacher(small_arrays):
    y = small_arrays["train_targets"]
    assert y.shape == (SMALL["train"], input_pipeline.NUM_TASKS)
    observed = ~np.isnan(y)
    assert 0.3 < observed.mean() < 0.95
    rates = np.nanmean(y, axis=0)
    assert np.all(rates > 0.0) and np.all(rates < 0.8)
    # Rebuild the same molecules and compare with the noiseless teacher.
    teacher = input_pipeline.teacher()
    rng = np.random.default_rng([input_pipeline.SEED, 0])
    clean = []
    while len(clean) < SMALL["train"]:
        mol = input_pipeline._molecule(rng)
        if len(mol.bonds) <= input_pipeline.MAX_BONDS:
            clean.append(teacher.labels(input_pipeline.motif_counts(mol)))
    clean = np.stack(clean)
    disagreement = np.mean(clean[observed] != y[observed])
    assert disagreement < 3 * input_pipeline.LABEL_NOISE


def test_generation_is_deterministic(small_arrays):
    again = input_pipeline.generate(sizes=SMALL)
    assert small_arrays.keys() == again.keys()
    for key in small_arrays:
        np.testing.assert_array_equal(small_arrays[key], again[key])
    other = input_pipeline.generate(seed=input_pipeline.SEED + 1, sizes={"train": 50})
    assert not np.array_equal(other["train_inputs"], small_arrays["train_inputs"][:50])


def test_shapes_and_param_types(workload, params, forward):
    types = workload.model_params_types
    assert types["node_encoder"]["kernel"] == spec.ParameterType.WEIGHT
    assert types["Mlp_0"]["Dense_0"]["bias"] == spec.ParameterType.BIAS
    assert types["Mlp_0"]["LayerNorm_0"]["scale"] == spec.ParameterType.LAYER_NORM_SCALE
    assert workload.is_output_params("output")
    d, t = 64, input_pipeline.NUM_TASKS
    node_dim, edge_dim = input_pipeline.NODE_DIM, input_pipeline.EDGE_DIM
    mlp = lambda fan_in: fan_in * d + d + 2 * d  # noqa: E731  (Dense + LayerNorm)
    first = mlp(3 * d + t) + mlp(3 * d + t) + mlp(2 * d + t)
    later = mlp(4 * d) + mlp(4 * d) + mlp(3 * d)
    expected = (node_dim + 1) * d + (edge_dim + 1) * d + first + later + d * t + t
    assert param_utils.num_params(params) == expected
    val = workload.split_arrays("validation")
    logits = forward(params, {k: jnp.asarray(v[:4]) for k, v in val.items()})
    assert logits.shape == (4, t) and bool(jnp.all(jnp.isfinite(logits)))


def test_padding_and_batch_neighbours_do_not_change_logits(workload, params, forward):
    val = workload.split_arrays("validation")
    batch = {k: jnp.asarray(v[:4]) for k, v in val.items()}
    logits = forward(params, batch)
    # Graph 1 again, now first, among other neighbours, with garbage in its padding slots.
    other = {k: jnp.asarray(v[[1, 7, 9, 11]]) for k, v in val.items()}
    n = int(other["node_mask"][0].sum())
    other["inputs"] = other["inputs"].at[0, n:].set(1.0)
    real_edge = other["edge_mask"][..., None] > 0
    other["edge_features"] = jnp.where(real_edge, other["edge_features"], 1.0)
    np.testing.assert_allclose(forward(params, other)[0], logits[1], rtol=1e-4, atol=1e-5)


def test_loss_masks_missing_labels_hand_computed():
    workload = MolgraphWorkload()
    labels = jnp.array([[1.0, jnp.nan], [0.0, 1.0], [1.0, 1.0]])
    logits = jnp.array([[0.0, 5.0], [2.0, -1.0], [9.0, 9.0]])
    out = workload.loss_fn(labels, logits, mask_batch=jnp.array([1.0, 1.0, 0.0]))
    expected = np.log(2.0) + np.log1p(np.exp(2.0)) + np.log1p(np.exp(1.0))
    np.testing.assert_allclose(out["summed"], expected, rtol=1e-6)
    assert float(out["n_valid_examples"]) == 3.0
    assert out["per_example"].shape == (3, 2) and float(out["per_example"][0, 1]) == 0.0

    def mean_loss(z):
        res = workload.loss_fn(labels, z, jnp.array([1.0, 1.0, 0.0]))
        return res["summed"] / res["n_valid_examples"]

    grads = jax.jit(jax.grad(mean_loss))(logits)
    assert bool(jnp.all(jnp.isfinite(grads)))
    assert float(grads[0, 1]) == 0.0 and float(jnp.abs(grads[2]).sum()) == 0.0


def test_train_step_lowers_loss(workload, params):
    train = workload.split_arrays("train")
    losses = nadamw_losses(workload, params, {k: jnp.asarray(v[:64]) for k, v in train.items()}, steps=5)
    assert losses[-1] < losses[0] - 0.05


def test_dropout_rate_may_be_traced(workload, params, forward):
    val = workload.split_arrays("validation")
    batch = {k: jnp.asarray(v[:4]) for k, v in val.items()}

    @jax.jit
    def train_forward(params, rate, rng):
        mode = spec.ForwardPassMode.TRAIN
        return workload.model_fn(params, batch, None, mode, rng, True, dropout_rate=rate)[0]

    rng = jax.random.PRNGKey(1)
    plain = forward(params, batch)
    np.testing.assert_allclose(train_forward(params, 0.0, rng), plain, rtol=1e-5, atol=1e-6)
    assert not np.allclose(train_forward(params, 0.5, rng), plain)


def test_eval_model_keys_and_values(workload, params, forward):
    state = None
    metrics = workload.eval_model(32, params, state, jax.random.PRNGKey(0), None, None, 0)
    for prefix in ("train", "validation", "test"):
        assert f"{prefix}/loss" in metrics and f"{prefix}/mean_average_precision" in metrics
        assert 0.0 < metrics[f"{prefix}/mean_average_precision"] < 1.0
    assert metrics["test/num_examples"] == SMALL["test"]
    # Batched and padded eval (120 graphs in batches of 32) equals one pass over the split.
    val = workload.split_arrays("validation")
    logits = jnp.concatenate(
        [
            forward(params, {k: jnp.asarray(v[i : i + 4]) for k, v in val.items()})
            for i in range(0, SMALL["validation"], 4)
        ]
    )
    labels = val["targets"]
    mask = ~np.isnan(labels)
    expected = mean_average_precision(np.nan_to_num(labels), np.asarray(logits), mask)
    # (Only nearly equal: near-tied scores of an untrained model may swap ranks when the
    # batch size changes the float rounding.)
    assert metrics["validation/mean_average_precision"] == pytest.approx(expected, abs=1e-3)
    loss = workload.loss_fn(jnp.asarray(labels), logits)
    assert metrics["validation/loss"] == pytest.approx(
        float(loss["summed"] / loss["n_valid_examples"]), rel=1e-5
    )
