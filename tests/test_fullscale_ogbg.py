"""Full-scale ogbg workloads: parameter parity, loss and mAP, TFDS-format reading, one step."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, registry, spec
from algoperf.data import tfrecord
from algoperf.workloads.ogbg import input_pipeline, metrics, prepare
from algoperf.workloads.ogbg.workload import OgbgWorkload
from tests.workload_checks import assert_seeks_like_an_uninterrupted_stream

# The spec sheet's counts (workloads-text-graph.md §2.2), all hand-derived there and equal to ours.
SHEET_COUNTS = {
    "ogbg": 3_554_176,
    "ogbg_gelu": 3_554_176,
    "ogbg_silu": 3_554_176,
    "ogbg_model_size": 2_571_648,
}


@pytest.mark.parametrize("name", sorted(SHEET_COUNTS))
def test_parameter_count_and_readout_match_the_spec_sheet(name):
    w = registry.get_workload(name)
    params, _ = jax.eval_shape(lambda: w.init_model_fn(jax.random.PRNGKey(0)))
    assert param_utils.num_params(params) == SHEET_COUNTS[name]
    readout = "Dense_18" if name == "ogbg_model_size" else "Dense_15"
    assert w.is_output_params(readout) and params[readout]["kernel"].shape[-1] == 128
    assert w.data_source == "download"
    assert (w.base_workload or name) == "ogbg"


def test_loss_masks_nan_labels_and_smooths_over_128_tasks():
    w = OgbgWorkload()
    labels = np.full((2, 128), np.nan, np.float32)
    labels[0, 0], labels[0, 1], labels[1, 0] = 1.0, 0.0, 0.0
    logits = np.zeros((2, 128), np.float32)
    logits[0, 0], logits[1, 0] = 2.0, -1.0
    out = w.loss_fn(jnp.asarray(labels), jnp.asarray(logits))
    bce = lambda x, y: max(x, 0) - x * y + math.log1p(math.exp(-abs(x)))  # noqa: E731
    assert float(out["n_valid_examples"]) == 3
    assert float(out["summed"]) == pytest.approx(bce(2.0, 1.0) + bce(0.0, 0.0) + bce(-1.0, 0.0), rel=1e-6)
    # Smoothing a: y -> (1 - a) y + a / 128 (not a / 2).
    a = 0.1
    out = w.loss_fn(jnp.asarray(labels), jnp.asarray(logits), label_smoothing=a)
    y1, y0 = (1 - a) + a / 128, a / 128
    assert float(out["summed"]) == pytest.approx(bce(2.0, y1) + bce(0.0, y0) + bce(-1.0, y0), rel=1e-6)
    # A padding graph (mask 0) contributes nothing.
    mask = np.ones((2, 128), np.float32)
    mask[1] = 0
    out = w.loss_fn(jnp.asarray(labels), jnp.asarray(logits), jnp.asarray(mask))
    assert float(out["n_valid_examples"]) == 2


def test_mean_average_precision_by_hand():
    # Task 0: scores 0.9 (pos), 0.8 (neg), 0.7 (pos): AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    # Task 1: one labelled positive ranked first: AP = 1. Task 2: no positive: ignored.
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    logits = np.array([[logit(0.9), 0.0, 0.0], [logit(0.8), 1.0, 0.0], [logit(0.7), -1.0, 0.0]])
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]], np.float32)
    mask = np.array([[1, 0, 1], [1, 1, 1], [1, 1, 1]], np.float32)
    assert metrics.mean_average_precision(logits, labels, mask) == pytest.approx((5 / 6 + 1) / 2)


def _molecule(rng: np.random.Generator, n: int | None = None) -> dict:
    """A TFDS ogbg_molpcba example: a chain of ``n`` atoms, 30% of the labels missing."""
    n = int(rng.integers(2, 8)) if n is None else n
    m = n - 1
    labels = rng.integers(0, 2, 128).astype(np.float32)
    labels[rng.random(128) < 0.3] = np.nan
    labels[int(rng.integers(128))] = 1.0  # every graph has a label: eval counts real graphs by weights
    return {
        "edge_feat": rng.integers(0, 4, (m, 3)).astype(np.float32),
        "edge_index": np.stack([np.arange(m), np.arange(1, n)], 1).astype(np.int64),
        "labels": labels,
        "node_feat": rng.integers(0, 10, (n, 9)).astype(np.float32),
        "num_edges": np.array([m], np.int64),
        "num_nodes": np.array([n], np.int64),
    }


class SmallOgbg(OgbgWorkload):
    """The same GNN code at a CPU-test size."""

    latent_dim = 16
    hidden_dims = (16,)
    num_message_passing_steps = 2


def data_parallel_case() -> tuple[spec.Workload, dict[str, np.ndarray]]:
    """A small GNN and one global batch of 16 graphs packed for 8 device shards (b = 2)."""
    rng = np.random.default_rng(1)
    graphs = [input_pipeline.example_to_graph(_molecule(rng)) for _ in range(16)]
    return SmallOgbg(), next(input_pipeline.batches(iter(graphs), 16, 8))


# OGB's pcba layout: 60 molecules (one a single atom without bonds), scaffold split by index.
NUM_GRAPHS = 60
SPLITS = {"train": 30, "valid": 17, "test": 13}


def _csv_gz(rows) -> bytes:
    """OGB's CSV: no header, integer codes, NaN written as an empty field."""
    lines = [",".join("" if isinstance(v, float) and math.isnan(v) else str(int(v)) for v in row) for row in rows]
    return gzip.compress(("\n".join(lines) + "\n").encode())


@pytest.fixture(scope="module")
def ogb_source(tmp_path_factory):
    """pcba.zip as OGB ships it, the molecules and the split indices."""
    rng = np.random.default_rng(0)
    molecules = [_molecule(rng, n=1 if i == 7 else None) for i in range(NUM_GRAPHS)]
    order = rng.permutation(NUM_GRAPHS)
    bounds = np.cumsum([0, *SPLITS.values()])
    splits = {name: np.sort(order[bounds[i] : bounds[i + 1]]) for i, name in enumerate(SPLITS)}
    files = {
        "raw/edge.csv.gz": _csv_gz(np.concatenate([g["edge_index"] for g in molecules])),
        "raw/edge-feat.csv.gz": _csv_gz(np.concatenate([g["edge_feat"] for g in molecules])),
        "raw/node-feat.csv.gz": _csv_gz(np.concatenate([g["node_feat"] for g in molecules])),
        "raw/graph-label.csv.gz": _csv_gz(np.stack([g["labels"] for g in molecules]).tolist()),
        "raw/num-node-list.csv.gz": _csv_gz([g["num_nodes"] for g in molecules]),
        "raw/num-edge-list.csv.gz": _csv_gz([g["num_edges"] for g in molecules]),
        **{f"split/scaffold/{name}.csv.gz": _csv_gz(idx[:, None]) for name, idx in splits.items()},
    }
    root = tmp_path_factory.mktemp("ogb")
    with zipfile.ZipFile(root / "pcba.zip", "w") as z:
        z.writestr("pcba/RELEASE_v1.txt", "")
        for name, data in files.items():
            z.writestr(f"pcba/{name}", data)
    return root / "pcba.zip", molecules, splits


@pytest.fixture(scope="module")
def data_dir(ogb_source, tmp_path_factory):
    """``algoperf data prepare ogbg`` (the CLI, in a subprocess) from pcba.zip."""
    root = tmp_path_factory.mktemp("data")
    proc = subprocess.run(
        [sys.executable, "-m", "algoperf.cli", "data", "prepare", "ogbg", "--source", str(ogb_source[0]),
         "--data-dir", str(root)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(root)


def test_prepare_writes_tfds_records_in_tfds_order(ogb_source, data_dir, tmp_path):
    _, molecules, splits = ogb_source
    folder = Path(data_dir) / "ogbg" / "ogbg_molpcba" / "0.1.3"
    assert sorted(p.name for p in folder.iterdir()) == [
        f"ogbg_molpcba-{s}.tfrecord-00000-of-00001" for s in ("test", "train", "validation")]
    for split, ogb_name in (("train", "train"), ("validation", "valid"), ("test", "test")):
        # TFDS's stored order: ascending md5(split name + graph index) as a 128-bit integer.
        expected = sorted(splits[ogb_name], key=lambda i: int(hashlib.md5(f"{split}{i}".encode()).hexdigest(), 16))
        stored = list(tfrecord.read_examples(input_pipeline.split_files(data_dir, split)))
        assert len(stored) == len(expected)
        for example, idx in zip(stored, expected, strict=True):
            source = molecules[idx]
            assert set(example) == set(source)
            for key, value in source.items():
                np.testing.assert_array_equal(np.asarray(example[key]).reshape(value.shape), value)
    assert len(molecules[7]["node_feat"]) == 1  # the bond-less atom made it through
    # The extracted folder gives the same records as the zip.
    with zipfile.ZipFile(ogb_source[0]) as z:
        z.extractall(tmp_path / "unzipped")
    prepare.prepare(tmp_path / "out", tmp_path / "unzipped")
    name = "ogbg_molpcba-test.tfrecord-00000-of-00001"
    assert (tmp_path / "out" / "ogbg" / "ogbg_molpcba" / "0.1.3" / name).read_bytes() == (folder / name).read_bytes()


def test_prepare_names_bad_sources(ogb_source, tmp_path):
    (tmp_path / "notazip.zip").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a zip file"):
        prepare.prepare(tmp_path / "out", tmp_path / "notazip.zip")
    with pytest.raises(spec.DataNotFoundError, match="pcba.zip"):
        prepare.prepare(tmp_path / "out", tmp_path)
    with zipfile.ZipFile(ogb_source[0]) as z:
        z.extractall(tmp_path / "cut")
    (tmp_path / "cut" / "pcba" / "raw" / "node-feat.csv.gz").write_bytes(_csv_gz([[1] * 9]))
    with pytest.raises(ValueError, match="node-feat.csv.gz rows: 1"):
        prepare.prepare(tmp_path / "out", tmp_path / "cut")


def test_missing_data_dir_is_a_clear_error(tmp_path):
    w = OgbgWorkload()
    with pytest.raises(spec.DataNotFoundError, match="--data-dir"):
        next(w._build_input_queue(jax.random.PRNGKey(0), "train", None, 8))
    with pytest.raises(spec.DataNotFoundError, match="algoperf data prepare ogbg"):
        next(w._build_input_queue(jax.random.PRNGKey(0), "train", str(tmp_path), 8))


def test_batches_are_padded_to_fixed_budgets_with_bidirectional_edges(data_dir):
    graphs = input_pipeline.load_split(data_dir, "validation")
    assert len(graphs) == SPLITS["valid"]
    assert all(len(g.senders) == 2 * (len(g.nodes) - 1) for g in graphs)
    b, shards = 4, 2
    batches = list(input_pipeline.batches(iter(graphs), b * shards, shards))
    real = 0
    for batch in batches:
        g = batch["inputs"]
        assert g.nodes.shape == (shards * (26 * b + 1), 9) and g.edges.shape == (shards * 56 * b, 3)
        assert g.n_node.shape == (shards * (b + 1),) and g.n_node.sum() == len(g.nodes)
        assert g.n_edge.sum() == len(g.edges) and g.senders.max() < len(g.nodes)
        assert batch["targets"].shape == batch["weights"].shape == (shards * (b + 1), 128)
        real += int(np.sum(batch["weights"].any(axis=1)))
    # Every graph exactly once, although 17 graphs leave an incomplete shard group.
    assert real == len(graphs)


# Evaluates the validation split (17 graphs: not a multiple of 8 devices x 2 graphs) on 1
# device and on 8 forced CPU devices, in a fresh process (the flag must precede JAX's start).
EIGHT_DEVICES = """
import json, sys
import jax, numpy as np
from algoperf import jax_sharding_utils
from tests.test_fullscale_ogbg import SmallOgbg

w, out = SmallOgbg(), {}
for n in (1, 8):
    with jax_sharding_utils.use_devices(jax.devices()[:n]):
        params, state = w.init_model_fn(jax.random.PRNGKey(0))
        metrics = w._eval_model_on_split("validation", 17, 16, params, state, None, sys.argv[1])
        batches = list(w._build_input_queue(None, "validation", sys.argv[1], 16))
        metrics["graphs"] = sum(int(np.asarray(b["weights"]).any(axis=1).sum()) for b in batches)
        metrics["devices"] = len(batches[0]["targets"].sharding.device_set)
        out[n] = metrics
print(json.dumps(out))
"""


def test_eval_counts_every_graph_once_on_eight_devices(data_dir):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", EIGHT_DEVICES, data_dir], cwd=Path(__file__).parents[1],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, eight = json.loads(proc.stdout.strip().splitlines()[-1]).values()
    assert (one["devices"], eight["devices"]) == (1, 8)
    assert one["graphs"] == eight["graphs"] == SPLITS["valid"]
    for key in ("loss", "accuracy", "mean_average_precision"):
        assert eight[key] == pytest.approx(one[key], rel=1e-5, abs=1e-7)


@pytest.mark.slow  # ~40 s wall on 2 busy cores (full-size GNN jit)
def test_train_step_lowers_loss_and_eval_covers_the_split(data_dir):
    w = OgbgWorkload()
    params, state = w.init_model_fn(jax.random.PRNGKey(0))
    batch = next(w._build_input_queue(jax.random.PRNGKey(1), "train", data_dir, 16))

    def loss(p):
        logits, _ = w.model_fn(p, batch, state, spec.ForwardPassMode.TRAIN, jax.random.PRNGKey(2), True, 0.0)
        out = w.loss_fn(batch["targets"], logits, batch["weights"])
        return out["summed"] / out["n_valid_examples"]

    step = jax.jit(lambda p: jax.tree.map(lambda x, g: x - 1e-3 * g, p, jax.grad(loss)(p)))
    before = float(loss(params))
    after = float(loss(step(params)))
    assert after < before
    result = w._eval_model_on_split("validation", SPLITS["valid"], 16, params, state, None, data_dir)
    assert set(result) == {"loss", "accuracy", "mean_average_precision"}
    assert 0.0 <= result["mean_average_precision"] <= 1.0


def test_a_resumed_train_stream_seeks_to_the_batches_an_uninterrupted_one_gives(data_dir):
    """Resume (issue #24): seek(n) finds the dynamic-batch boundaries from node and edge
    counts alone; the stream is the dynamic batching of a fresh permutation each epoch."""
    graphs = input_pipeline.load_split(data_dir, "train")
    assert_seeks_like_an_uninterrupted_stream(
        lambda: input_pipeline.TrainBatches(graphs, 8, 2, seed=5), seeks=(0, 3, 4, 9), length=12)

    rng = np.random.default_rng(5)
    permuted = (graphs[i] for _ in range(4) for i in rng.permutation(len(graphs)))
    stream = input_pipeline.TrainBatches(graphs, 8, 2, seed=5)
    for expected in itertools.islice(input_pipeline.batches(permuted, 8, 2), 10):
        got = next(stream)
        for key in ("targets", "weights"):
            np.testing.assert_array_equal(got[key], expected[key])
        np.testing.assert_array_equal(got["inputs"].nodes, expected["inputs"].nodes)
