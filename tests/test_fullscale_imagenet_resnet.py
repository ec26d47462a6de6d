"""imagenet_resnet (ResNet-50) and variants: architecture parity, constants, loss/eval maths,
BatchNorm semantics, the TensorFlow-free ImageNet pipeline on small files in both of
AlgoPerf's on-disk layouts (eval streams: centre crop, eval_train, ImageNet-v2, padding), and
``algoperf data prepare imagenet`` from tiny archives in the official formats.

Full-size ResNet-50 is only built with ``jax.eval_shape`` (no computation); real forward and
train steps use the same module classes at reduced depth/width (``small_model``) because a
full ResNet-50 compile takes about a minute on this 2-core machine.
"""

from __future__ import annotations

import dataclasses
import io
import math
import subprocess
import sys
import tarfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, registry, spec
from algoperf.data import tfrecord
from algoperf.workloads.imagenet_resnet import input_pipeline, prepare, preprocessing
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
    assert w.has_reached_validation_target({"validation/accuracy": TARGETS[name][0]})  # equal counts: target_rule
    assert not w.has_reached_validation_target({"validation/accuracy": TARGETS[name][0] - 1e-6})


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
    assert preprocessing.center_crop_box(300, 400) == (69, 19, 69 + 262, 19 + 262)  # s = int(0.875*300)
    rng = np.random.default_rng(0)
    for _ in range(200):
        box = preprocessing.sample_crop_box(120, 90, rng)
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
    mixed, targets = preprocessing.mixup(images, labels, np.random.default_rng(5), num_classes=5)
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


def test_a_resumed_train_stream_seeks_to_the_batches_an_uninterrupted_one_gives(tmp_path):
    """Resume (issue #24): seek(n) gives batch n without decoding batches 0..n-1, over epoch ends."""
    write_imagenet_folders(tmp_path, per_class=3)  # 6 train images: batch 4 crosses epochs
    source = input_pipeline.find_source(tmp_path, "train")

    def stream(source):
        return input_pipeline.batches(source, 4, train=True, shuffle=True, repeat=True, seed=7, image_size=32,
                                      use_mixup=True, use_randaugment=True, num_threads=1)

    first = stream(source)
    uninterrupted = [next(first) for _ in range(6)]
    first.close()
    loads = []
    counted = dataclasses.replace(source)  # its own copy: the first stream may still be decoding ahead
    object.__setattr__(counted, "load", lambda i: loads.append(i) or source.load(i))
    resumed = stream(counted)
    resumed.seek(4)
    for n in (4, 5):
        batch = next(resumed)
        np.testing.assert_array_equal(batch["inputs"], uninterrupted[n]["inputs"])
        np.testing.assert_array_equal(batch["targets"], uninterrupted[n]["targets"])
    assert len(loads) <= 3 * 4  # batches 4, 5 and the one decoded ahead: nothing before batch 4
    # Positions 0..11 are two epochs of the 6 images, each image once per epoch.
    epochs = np.concatenate([b["targets"] for b in stream_without_mixup(source)])
    assert sorted(epochs[:6].tolist()) == sorted(epochs[6:].tolist()) == [0, 0, 0, 1, 1, 1]


def stream_without_mixup(source):
    s = input_pipeline.batches(source, 4, train=True, shuffle=True, repeat=True, seed=7, image_size=32, num_threads=1)
    return [next(s) for _ in range(3)]


def direct_metrics(forward, params, state, images: list[tuple[bytes, int]], size: int = 32) -> dict[str, float]:
    """Accuracy and mean loss computed directly, one image at a time (batches of 4, the compiled shape)."""
    x = np.stack([preprocessing.normalize(preprocessing.preprocess_eval(d, size)) for d, _ in images])
    y = np.array([label for _, label in images])
    logits = []
    for start in range(0, len(x), 4):
        idx = [start + i if start + i < len(x) else start for i in range(4)]  # repeat rows to fill 4
        out, _ = forward(params, {"inputs": jnp.asarray(x[idx])}, state, spec.ForwardPassMode.EVAL, None, False)
        logits.append(np.asarray(out)[: min(4, len(x) - start)])
    logits = np.concatenate(logits)
    return {
        "accuracy": float(np.mean(np.argmax(logits, -1) == y)),
        "loss": float(softmax_cross_entropy(jnp.asarray(y), jnp.asarray(logits))["summed"]) / len(y),
    }


def test_train_batch_and_eval_through_the_real_pipeline(tmp_path, small):
    images = write_imagenet_folders(tmp_path)
    w, params, state, forward = small
    w._eval_iters.clear()  # the shared workload may have evaluated another folder
    queue = w._build_input_queue(jax.random.PRNGKey(1), "train", str(tmp_path), 4)
    batch = next(queue)
    # The pipeline crops to the workload's input size (224; 32 for this small test model).
    assert batch["inputs"].shape == (4, 32, 32, 3) and batch["inputs"].dtype == jnp.float32
    assert batch["targets"].shape == (4,) and "weights" not in batch
    assert set(np.asarray(batch["targets"]).tolist()) <= {0, 1}
    _, new_state = forward(params, batch, state, spec.ForwardPassMode.TRAIN, None, True)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)

    # 6 validation images, eval batch 4: the second batch has 2 real rows and 2 of weight 0;
    # every image counts once, so the eval equals the direct mean.
    metrics = w._eval_model_on_split("validation", 6, 4, params, state, jax.random.PRNGKey(2), str(tmp_path))
    expected = direct_metrics(forward, params, state, images["validation"])
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"])
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-4)
    # A second eval reuses the stored iterator and sees the same epoch again.
    again = w._eval_model_on_split("validation", 6, 4, params, state, jax.random.PRNGKey(2), str(tmp_path))
    assert again == pytest.approx(metrics)
    # The test split is ImageNet-v2 (2 images here, one batch padded with 2 rows of weight 0).
    test = w._eval_model_on_split("test", 2, 4, params, state, jax.random.PRNGKey(2), str(tmp_path))
    expected = direct_metrics(forward, params, state, images["test"])
    assert test["accuracy"] == pytest.approx(expected["accuracy"])
    assert test["loss"] == pytest.approx(expected["loss"], rel=1e-4)


# --- eval streams ---------------------------------------------------------------------------


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def test_eval_preprocessing_is_the_central_87_5_percent_crop_resized_to_224():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)  # lossless PNG: exact pixels
    # s = int(0.875 * 256) = 224 at offsets ((256 - 224 + 1) // 2, (320 - 224 + 1) // 2) = (16, 48);
    # already 224 wide, so the resize is the identity.
    np.testing.assert_allclose(preprocessing.preprocess_eval(png_bytes(image)), image[16:240, 48:272], atol=1e-3)
    # 87.5 % of the short side whatever the output size: a 64x64 output of the same crop.
    small = preprocessing.preprocess_eval(png_bytes(image), 64)
    from PIL import Image

    direct = Image.fromarray(image).resize((64, 64), Image.Resampling.BICUBIC, box=(48, 16, 272, 240))
    np.testing.assert_allclose(small, np.asarray(direct, np.float32))


def test_eval_train_is_train_images_with_eval_preprocessing_and_eval_batches_are_padded(tmp_path):
    images = write_imagenet_folders(tmp_path)
    w = registry.get_workload("imagenet_resnet")
    w.init_shape = (32, 32, 3)

    def key(x: np.ndarray) -> bytes:
        return np.asarray(x, np.float32).tobytes()

    train = {key(preprocessing.normalize(preprocessing.preprocess_eval(d, 32))): y for d, y in images["train"]}
    rows, labels = [], []
    queue = w._build_input_queue(jax.random.PRNGKey(0), "eval_train", str(tmp_path), 4)
    for _ in range(3):  # 12 rows from 6 images: the stream goes on past an epoch
        batch = jax.device_get(next(queue))
        np.testing.assert_array_equal(batch["weights"], 1.0)  # never padded
        rows += [key(x) for x in batch["inputs"]]
        labels += batch["targets"].tolist()
    assert all(r in train for r in rows)  # not augmented: exactly the eval crops of train images
    assert labels == [train[r] for r in rows]
    assert sorted(rows[:6]) == sorted(train)  # every image once per pass
    other = jax.device_get(next(w._build_input_queue(jax.random.PRNGKey(5), "eval_train", str(tmp_path), 4)))
    assert [key(x) for x in other["inputs"]] != rows[:4]  # shuffled by the seed

    # Validation: in order, the epoch's last batch padded with zero rows of weight 0, then again.
    val = w._build_input_queue(jax.random.PRNGKey(0), "validation", str(tmp_path), 4)
    first, second, third = (jax.device_get(next(val)) for _ in range(3))
    np.testing.assert_array_equal(first["weights"], 1.0)
    np.testing.assert_array_equal(second["weights"], [1, 1, 0, 0])
    np.testing.assert_array_equal(second["inputs"][2:], 0.0)
    assert second["targets"].tolist()[:2] == [label for _, label in images["validation"][4:]]
    np.testing.assert_array_equal(third["inputs"], first["inputs"])
    # ImageNet-v2 (test): labels from the folder names.
    test = jax.device_get(next(w._build_input_queue(jax.random.PRNGKey(0), "test", str(tmp_path), 4)))
    assert test["targets"].tolist() == [0, 1, 0, 0] and test["weights"].tolist() == [1, 1, 0, 0]


# --- algoperf data prepare imagenet ------------------------------------------------------------

WNIDS = ("n01440764", "n01443537", "n01484850")
DEVKIT_IDS = {1: "n01484850", 2: "n01440764", 3: "n01443537"}  # the devkit's IDs are not in wnid order


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_imagenet_archives(folder: Path, labels: str | None = "devkit") -> dict[str, list]:
    """Tiny archives in the official formats: the train tar of per-class tars, the flat val tar,
    the devkit (meta.mat + ground truth) or Kaggle's CSV, and ImageNet-v2's tar.gz."""
    import scipy.io

    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / prepare.TRAIN_TAR, "w") as outer:
        for wnid in WNIDS:
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as tar:
                for i in range(2):
                    _add(tar, f"{wnid}_{i}.JPEG", jpeg_bytes(rng, 40, 48))
            _add(outer, f"{wnid}.tar", inner.getvalue())
    truth = [2, 1, 3, 3, 2, 1]  # ILSVRC2012_ID of val image 1..6
    val = [(f"ILSVRC2012_val_{i:08d}.JPEG", jpeg_bytes(rng, 44, 36), DEVKIT_IDS[t]) for i, t in enumerate(truth, 1)]
    with tarfile.open(folder / prepare.VAL_TAR, "w") as tar:
        for name, data, _ in val:
            _add(tar, name, data)
    if labels == "devkit":
        fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
        synsets = np.array([(i, w, "a leaf", 0) for i, w in DEVKIT_IDS.items()] + [(4, "n00001740", "entity", 3)], fields)
        meta = io.BytesIO()
        scipy.io.savemat(meta, {"synsets": synsets})
        with tarfile.open(folder / prepare.DEVKIT, "w:gz") as tar:
            _add(tar, "ILSVRC2012_devkit_t12/data/meta.mat", meta.getvalue())
            _add(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
                 "".join(f"{t}\n" for t in truth).encode())
    elif labels == "kaggle":
        rows = "".join(f"{name[:-5]},{wnid} 1 2 30 40 {wnid} 5 6 20 30\n" for name, _, wnid in val)
        (folder / prepare.KAGGLE_VAL_LABELS).write_text("ImageId,PredictionString\n" + rows)
    with tarfile.open(folder / prepare.V2_ARCHIVE, "w:gz") as tar:
        for label in range(3):
            _add(tar, f"imagenetv2-matched-frequency-format-val/{label}/{label}abc.jpeg", jpeg_bytes(rng, 30, 30))
    return {"val": val}


def test_data_prepare_imagenet_through_the_cli_then_train_and_eval(tmp_path, small):
    archives = write_imagenet_archives(tmp_path / "downloads")
    data = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "algoperf.cli", "data", "prepare", "imagenet", "--data-dir", str(data),
         "--source", str(tmp_path / "downloads")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = data / "imagenet" / "pytorch"  # AlgoPerf's PyTorch layout
    assert sorted(d.name for d in (out / "train").iterdir()) == list(WNIDS)
    assert sorted(f.name for f in (out / "train" / WNIDS[1]).iterdir()) == [f"{WNIDS[1]}_0.JPEG", f"{WNIDS[1]}_1.JPEG"]
    for name, content, wnid in archives["val"]:  # each val image in its ground-truth class folder
        assert (out / "val" / wnid / name).read_bytes() == content
    assert sorted(d.name for d in (out / "imagenetv2-matched-frequency-format-val").iterdir()) == ["0", "1", "2"]
    assert not list(out.glob("*.partial"))

    # The real pipeline reads it from --data-dir: one train batch and one eval.
    w, params, state, forward = small
    w._eval_iters.clear()
    batch = next(w._build_input_queue(jax.random.PRNGKey(1), "train", str(data), 4))
    assert batch["inputs"].shape == (4, 32, 32, 3) and set(np.asarray(batch["targets"]).tolist()) <= {0, 1, 2}
    forward(params, batch, state, spec.ForwardPassMode.TRAIN, None, True)
    # Validation labels are the rank of the ground-truth wnid; in folder order (class, then file).
    val = sorted(((WNIDS.index(w_), n), c) for n, c, w_ in archives["val"])
    images = [(content, label) for (label, _), content in val]
    first = next(w._build_input_queue(jax.random.PRNGKey(0), "validation", str(data), 4))
    assert np.asarray(first["targets"]).tolist() == [label for _, label in images[:4]]
    metrics = w._eval_model_on_split("validation", 6, 4, params, state, jax.random.PRNGKey(2), str(data))
    expected = direct_metrics(forward, params, state, images)
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"])
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-4)


def test_data_prepare_imagenet_kaggle_labels_resume_and_errors(tmp_path):
    with pytest.raises(spec.DataNotFoundError, match="ILSVRC2012_img_train.tar"):
        prepare.prepare(tmp_path / "d", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(spec.DataNotFoundError, match="ILSVRC2012_img_train.tar not found"):
        prepare.prepare(tmp_path / "d", tmp_path / "empty")
    with pytest.raises(TypeError, match="val_labels"):
        prepare.prepare(tmp_path / "d", tmp_path / "empty", labels="x")
    # No labels file: the message says which ones are read.
    write_imagenet_archives(tmp_path / "nolabels", labels=None)
    with pytest.raises(spec.DataNotFoundError, match="ILSVRC2012_devkit_t12.tar.gz or .*LOC_val_solution.csv"):
        prepare.prepare(tmp_path / "d", tmp_path / "nolabels")
    # A train tar of JPEGs (not of per-class tars) is not the ILSVRC2012 train archive.
    with tarfile.open(tmp_path / "nolabels" / prepare.TRAIN_TAR, "w") as tar:
        _add(tar, "x.JPEG", b"jpeg")
    with pytest.raises(spec.DataNotFoundError, match="not per-class"):
        prepare.prepare(tmp_path / "bad", tmp_path / "nolabels", val_labels=str(_kaggle(tmp_path)))
    assert not (tmp_path / "bad" / "imagenet" / "pytorch" / "train").exists()  # only train.partial

    # Kaggle's CSV gives the same layout as the devkit.
    archives = write_imagenet_archives(tmp_path / "kaggle", labels="kaggle")
    out = prepare.prepare(tmp_path / "k", tmp_path / "kaggle")
    for name, _, wnid in archives["val"]:
        assert (out / "val" / wnid / name).is_file()
    # Prepared splits are kept: a second run needs no archives.
    for f in (tmp_path / "kaggle").iterdir():
        f.unlink()
    assert prepare.prepare(tmp_path / "k", tmp_path / "kaggle") == out


def _kaggle(tmp_path: Path) -> Path:
    path = tmp_path / "LOC_val_solution.csv"
    path.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 1 2 3 4\n")
    return path


# --- data parallel (tests/data_parallel_check.py) --------------------------------------------


def data_parallel_case() -> tuple[spec.Workload, dict[str, np.ndarray]]:
    """ResNet-50's classes with 4 filters and two stages of one bottleneck block (projected,
    then strided: compiling is the cost) on 32x32 images, a global batch of 16 integer labels.

    Its batch_stats (the BN moments of the global batch) are compared as well.
    """
    w = registry.get_workload("imagenet_resnet")
    w._model = w.model.clone(stage_sizes=(1, 1), num_filters=4)
    w.init_shape = (32, 32, 3)
    rng = np.random.default_rng(0)
    inputs = (rng.normal(size=(16, 32, 32, 3)) * 2 + 1).astype(np.float32)
    return w, {"inputs": inputs, "targets": rng.integers(0, 1000, 16).astype(np.int32)}
