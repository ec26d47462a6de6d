"""imagenet_resnet (ResNet-50) and variants: architecture parity, constants, loss/eval maths,
BatchNorm semantics, and the TensorFlow-free ImageNet pipeline on small files in both of
AlgoPerf's on-disk layouts.

Full-size ResNet-50 is only built with ``jax.eval_shape`` (no computation); real forward and
train steps use the same module classes at reduced depth/width (``small_model``) because a
full ResNet-50 compile takes about a minute on this 2-core machine.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, registry, spec, tfrecord
from algoperf.workloads.imagenet_resnet import input_pipeline
from algoperf.workloads.imagenet_resnet.base import batch_metric_sums, softmax_cross_entropy

RESNET50_PARAMS = 25_557_032  # spec sheet 3.1
RESNET50_BATCH_STATS = 53_120

TARGETS = {  # spec sheet 3.2: (validation, test)
    "imagenet_resnet": (0.77431, 0.6560),
    "imagenet_resnet_silu": (0.75445, 0.6323),
    "imagenet_resnet_gelu": (0.76765, 0.6519),
    "imagenet_resnet_large_bn_init": (0.76526, 0.6423),
}


def small_model(workload):
    """The workload's own ResNet class and variant settings, one block per stage, 4 filters."""
    return workload.model.clone(stage_sizes=(1, 1, 1, 1), num_filters=4)


# --- helpers shared with the ViT tests -------------------------------------------------


def jpeg_bytes(rng: np.random.Generator, height: int, width: int, gray: bool = False) -> bytes:
    from PIL import Image

    shape = (height, width) if gray else (height, width, 3)
    image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def write_imagenet_folders(root: Path, per_class: int = 3, classes=("n01440764", "n01443537")) -> dict:
    """AlgoPerf's PyTorch layout: train/<wnid>/*.JPEG, val/<wnid>/*.JPEG, plus ImageNet-v2 folders."""
    rng = np.random.default_rng(0)
    images: dict[str, list[tuple[bytes, int]]] = {"train": [], "validation": [], "test": []}
    for split, folder in (("train", "train"), ("validation", "val")):
        for label, wnid in enumerate(classes):
            (root / folder / wnid).mkdir(parents=True)
            for i in range(per_class):
                data = jpeg_bytes(rng, int(rng.integers(40, 90)), int(rng.integers(40, 90)), gray=i == 1)
                (root / folder / wnid / f"{wnid}_{i}.JPEG").write_bytes(data)
                images[split].append((data, label))
    for label in range(len(classes)):
        d = root / "imagenetv2-matched-frequency-format-val" / str(label)
        d.mkdir(parents=True)
        data = jpeg_bytes(rng, 64, 48)
        (d / "a.jpeg").write_bytes(data)
        images["test"].append((data, label))
    return images


def write_imagenet_tfrecords(root: Path, images: dict) -> None:
    """AlgoPerf's JAX (TFDS) layout with the same images, two shards per split."""
    patterns = {
        "train": ("imagenet2012/5.1.0", "imagenet2012-train"),
        "validation": ("imagenet2012/5.1.0", "imagenet2012-validation"),
        "test": ("imagenet_v2/matched-frequency/3.0.0", "imagenet_v2-test"),
    }
    for split, (folder, stem) in patterns.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        records = [tfrecord.make_example({"image": d, "label": y, "file_name": b"x.JPEG"}) for d, y in images[split]]
        half = (len(records) + 1) // 2
        for shard, part in enumerate((records[:half], records[half:])):
            tfrecord.write_records(root / folder / f"{stem}.tfrecord-{shard:05d}-of-00002", part)


# --- architecture ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_resnet50_parameter_count_matches_the_spec_sheet(name):
    workload = registry.get_workload(name)
    params, state = jax.eval_shape(lambda: workload.init_model_fn(jax.random.PRNGKey(0)))
    assert param_utils.num_params(params) == RESNET50_PARAMS
    assert len(jax.tree.leaves(params)) == 161
    assert param_utils.num_params(state["batch_stats"]) == RESNET50_BATCH_STATS
    types = [t for t in jax.tree.leaves(workload.model_params_types)]
    census = {t: types.count(t) for t in set(types)}
    P = spec.ParameterType
    assert census == {P.CONV_WEIGHT: 53, P.BATCH_NORM_SCALE: 53, P.BATCH_NORM_BIAS: 53, P.WEIGHT: 1, P.BIAS: 1}
    assert workload.is_output_params("Dense_0") and not workload.is_output_params("Conv_init")
    assert params["Dense_0"]["kernel"].shape == (2048, 1000)


@pytest.mark.slow  # compiles a (small) ResNet: 10-60 s on 2 busy cores
def test_variants_differ_only_in_activation_and_bn_init():
    from algoperf.workloads.imagenet_resnet.model import ACTIVATIONS

    x = jnp.linspace(-2, 2, 5)
    expected_act = {"imagenet_resnet": jax.nn.relu(x), "imagenet_resnet_silu": x * jax.nn.sigmoid(x),
                    "imagenet_resnet_gelu": jax.nn.gelu(x, approximate=True), "imagenet_resnet_large_bn_init": jax.nn.relu(x)}
    for name in TARGETS:
        model = registry.get_workload(name).model
        np.testing.assert_allclose(ACTIVATIONS[model.act_name](x), expected_act[name], rtol=1e-6)
        assert model.bn_init_scale == (8.0 if name.endswith("large_bn_init") else 0.0)
    # What bn_init_scale does to the initial parameters (one small model is enough).
    model = small_model(registry.get_workload("imagenet_resnet_large_bn_init"))
    variables = jax.jit(model.init)({"params": jax.random.PRNGKey(0)}, jnp.ones((1, 16, 16, 3)))
    for block in ("BottleneckResNetBlock_0", "BottleneckResNetBlock_1"):
        params = variables["params"][block]
        np.testing.assert_array_equal(params["BatchNorm_2"]["scale"], 8.0)  # last BN of the main branch
        np.testing.assert_array_equal(params["BatchNorm_proj"]["scale"], 1.0)
        np.testing.assert_array_equal(params["BatchNorm_0"]["scale"], 1.0)
    assert variables["batch_stats"]["BatchNorm_init"]["var"].tolist() == [1.0] * 4


# --- constants ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_constants_are_algoperfs(name):
    w = registry.get_workload(name)
    assert (w.validation_target_value, w.test_target_value) == TARGETS[name]
    assert (w.max_allowed_runtime_sec, w.eval_period_time_sec, w.step_hint) == (66_159, 510, 195_999)
    assert (w.eval_batch_size, w.num_eval_train_examples) == (1024, 50_176)
    assert (w.num_train_examples, w.num_validation_examples, w.num_test_examples) == (1_281_167, 50_000, 10_000)
    assert w.loss_type == spec.LossType.SOFTMAX_CROSS_ENTROPY and w.target_metric_name == "accuracy"
    assert w.data_source == "download"
    assert w.base_workload == (None if name == "imagenet_resnet" else "imagenet_resnet")
    assert registry.workload_info(name)["base_workload"] == "imagenet_resnet"
    np.testing.assert_allclose(w.train_mean, (123.675, 116.28, 103.53))
    np.testing.assert_allclose(w.train_stddev, (58.395, 57.12, 57.375))
    assert w.has_reached_validation_target({"validation/accuracy": TARGETS[name][0] + 1e-6})
    assert not w.has_reached_validation_target({"validation/accuracy": TARGETS[name][0]})  # strict


# --- loss and eval maths ---------------------------------------------------------------


def test_loss_fn_on_a_hand_computed_case():
    logits = jnp.array([[0.0, math.log(3.0), 0.0], [0.0, 0.0, 0.0]])  # softmax row 0: (1/5, 3/5, 1/5)
    labels = jnp.array([1, 2])
    out = softmax_cross_entropy(labels, logits)
    np.testing.assert_allclose(out["per_example"], [math.log(5 / 3), math.log(3)], rtol=1e-6)
    np.testing.assert_allclose(out["summed"], math.log(5 / 3) + math.log(3), rtol=1e-6)
    assert float(out["n_valid_examples"]) == 2
    # Smoothing 0.3 over K = 3: t = 0.7 onehot + 0.1; row 0 loss = -(0.1 log 1/5 + 0.8 log 3/5 + 0.1 log 1/5).
    smoothed = softmax_cross_entropy(labels, logits, jnp.array([1.0, 0.0]), label_smoothing=0.3)
    np.testing.assert_allclose(smoothed["summed"], -(0.2 * math.log(0.2) + 0.8 * math.log(0.6)), rtol=1e-6)
    assert float(smoothed["n_valid_examples"]) == 1
    # Dense (mixup) targets are taken as they are.
    dense = softmax_cross_entropy(jnp.array([[0.5, 0.5, 0.0]]), logits[:1])
    np.testing.assert_allclose(dense["summed"], 0.5 * math.log(5) + 0.5 * math.log(5 / 3), rtol=1e-6)


def test_integer_labels_of_batch_size_equal_to_classes_are_not_mistaken_for_one_hot():
    # The reference's G6: a 1-D batch of K integer labels would be read as one-hot.
    k = 4
    labels = jnp.array([0, 1, 2, 3])
    out = softmax_cross_entropy(labels, jnp.zeros((k, k)))
    np.testing.assert_allclose(out["per_example"], [math.log(k)] * k, rtol=1e-6)


def test_eval_batch_sums_count_correct_weighted_rows():
    logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 5.0]])
    labels = jnp.array([0, 0, 0, 1])
    weights = jnp.array([1.0, 1.0, 1.0, 0.0])  # the last row is padding
    sums = batch_metric_sums(logits, labels, weights)
    assert float(sums["accuracy"]) == 2.0  # rows 0 and 2 right, row 1 wrong, row 3 ignored
    expected = sum(math.log1p(math.exp(-m)) for m in (2.0, -1.0, 3.0))
    np.testing.assert_allclose(float(sums["loss"]), expected, rtol=1e-6)


# --- model_fn semantics ---------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    """imagenet_resnet with a small model of the same classes, initialised once, and a jitted forward."""
    w = registry.get_workload("imagenet_resnet")
    w._model = small_model(w)
    w.init_shape = (32, 32, 3)
    params, state = w.init_model_fn(jax.random.PRNGKey(0))
    forward = jax.jit(w.model_fn, static_argnums=(3, 5))
    return w, params, state, forward


@pytest.mark.slow  # compiles a (small) ResNet: 10-60 s on 2 busy cores
def test_model_fn_batch_norm_update_semantics_and_a_train_step_lowers_the_loss(small):
    w, params, state, forward = small
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 32, 32, 3)) * 2 + 1
    batch = {"inputs": x, "targets": jnp.arange(4) % 3}
    train = spec.ForwardPassMode.TRAIN
    logits, new_state = forward(params, batch, state, train, None, True)
    assert logits.shape == (4, 1000)
    before = state["batch_stats"]["BatchNorm_init"]["mean"]
    after = new_state["batch_stats"]["BatchNorm_init"]["mean"]
    assert not np.allclose(before, after)  # ra <- 0.9 ra + 0.1 batch mean moved off 0
    frozen_logits, same_state = forward(params, batch, state, train, None, False)
    assert jax.tree.all(jax.tree.map(np.array_equal, same_state, state))
    assert not np.allclose(logits, frozen_logits)  # running averages, not batch statistics

    def loss(p, s):
        out_logits, s2 = w.model_fn(p, batch, s, train, None, update_batch_norm=True)
        out = w.loss_fn(batch["targets"], out_logits)
        return out["summed"] / out["n_valid_examples"], s2

    @jax.jit
    def step(p, s):
        (value, s2), grads = jax.value_and_grad(loss, has_aux=True)(p, s)
        return value, jax.tree.map(lambda a, g: a - 0.5 * g, p, grads), s2

    l0, p1, s1 = step(params, state)
    l1, _, _ = step(p1, s1)
    assert float(l1) < float(l0)


# --- input pipeline -------------------------------------------------------------------


def test_center_crop_and_random_crop_windows():
    assert input_pipeline.center_crop_box(300, 400) == (69, 19, 69 + 262, 19 + 262)  # s = int(0.875*300)
    rng = np.random.default_rng(0)
    for _ in range(200):
        box = input_pipeline.sample_crop_box(120, 90, rng)
        if box is None:
            continue
        left, top, right, bottom = box
        w, h = right - left, bottom - top
        assert 0 <= left < right <= 90 and 0 <= top < bottom <= 120
        assert w * h >= 0.1 * 120 * 90 and (w, h) != (90, 120)
        assert 0.75 - 0.05 <= w / h <= 4 / 3 + 0.05  # rounding of h, w


def test_mixup_mixes_images_and_one_hot_targets_with_one_lambda():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 2, 2, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 3])
    mixed, targets = input_pipeline.mixup(images, labels, np.random.default_rng(5), num_classes=5)
    lam = targets[0, 0]
    np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(targets[0, 3], 1 - lam, rtol=1e-6)  # row 0 mixes with row -1
    np.testing.assert_allclose(mixed[1], lam * images[1] + (1 - lam) * images[0], rtol=1e-5)


def test_missing_or_empty_data_dir_raises_a_clear_error(tmp_path):
    w = registry.get_workload("imagenet_resnet")
    with pytest.raises(spec.DataNotFoundError, match="--data-dir"):
        w._build_input_queue(jax.random.PRNGKey(0), "train", None, 8)
    with pytest.raises(spec.DataNotFoundError, match="train split not found"):
        w._build_input_queue(jax.random.PRNGKey(0), "train", str(tmp_path), 8)


def test_both_layouts_give_the_same_eval_batches(tmp_path):
    images = write_imagenet_folders(tmp_path / "pytorch")
    write_imagenet_tfrecords(tmp_path / "jax", images)
    for split in ("train", "validation", "test"):
        assert input_pipeline.find_source(tmp_path / "pytorch", split).kind == "folder"
        source = input_pipeline.find_source(tmp_path, split)  # finds jax/ below the root
        assert source.kind == "tfrecord" and len(source) == len(images[split])
    folder = input_pipeline.find_source(tmp_path / "pytorch", "validation")
    records = input_pipeline.find_source(tmp_path / "jax", "validation")
    a = next(input_pipeline.batches(folder, 4, train=False, shuffle=False, repeat=False, seed=0, image_size=64))
    b = next(input_pipeline.batches(records, 4, train=False, shuffle=False, repeat=False, seed=0, image_size=64))
    np.testing.assert_array_equal(a["targets"], b["targets"])
    np.testing.assert_allclose(a["inputs"], b["inputs"])
    # ImageNet-v2 folders are named by label.
    test = input_pipeline.find_source(tmp_path / "pytorch", "test")
    assert test.labels.tolist() == [0, 1]


def test_train_batch_and_eval_through_the_real_pipeline(tmp_path, small):
    images = write_imagenet_folders(tmp_path)
    w, params, state, forward = small
    w.num_validation_examples = 6  # the files written above; eval batch 4: 2 batches, last padded
    queue = w._build_input_queue(jax.random.PRNGKey(1), "train", str(tmp_path), 4)
    batch = next(queue)
    # The pipeline crops to the workload's input size (224; 32 for this small test model).
    assert batch["inputs"].shape == (4, 32, 32, 3) and batch["inputs"].dtype == jnp.float32
    assert batch["targets"].shape == (4,) and "weights" not in batch
    assert set(np.asarray(batch["targets"]).tolist()) <= {0, 1}
    _, new_state = forward(params, batch, state, spec.ForwardPassMode.TRAIN, None, True)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)

    metrics = w._eval_model_on_split("validation", 6, 4, params, state, jax.random.PRNGKey(2), str(tmp_path))
    # The same numbers computed directly, one image at a time.
    x = np.stack([input_pipeline.normalize(input_pipeline.preprocess_eval(d, 32)) for d, _ in images["validation"]])
    y = np.array([label for _, label in images["validation"]])
    # Rows 0-3, then 4-5 (with two repeats to keep the compiled batch shape of 4).
    logits = np.concatenate([
        forward(params, {"inputs": jnp.asarray(x[idx])}, state, spec.ForwardPassMode.EVAL, None, False)[0][:n]
        for idx, n in (([0, 1, 2, 3], 4), ([4, 5, 4, 5], 2))
    ])
    expected_acc = float(np.mean(np.argmax(logits, -1) == y))
    expected_loss = float(softmax_cross_entropy(jnp.asarray(y), logits)["summed"]) / 6
    assert metrics["accuracy"] == pytest.approx(expected_acc)
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-4)
    # A second eval reuses the stored iterator and sees the same epoch again.
    again = w._eval_model_on_split("validation", 6, 4, params, state, jax.random.PRNGKey(2), str(tmp_path))
    assert again == pytest.approx(metrics)
