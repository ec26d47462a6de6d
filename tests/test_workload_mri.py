"""The mri workload: data, U-Net, L1 loss, SSIM, one train step and one eval."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from skimage.metrics import structural_similarity

from algoperf import param_utils, registry, spec
from algoperf.workloads.mri import input_pipeline, metrics
from algoperf.workloads.mri.workload import MriTanhWorkload, MriWorkload
from tests.workload_checks import small_generated_data, workload_on_files

SMALL = {"NUM_TRAIN": 64, "NUM_VALIDATION": 24, "NUM_TEST": 24}
ssim = jax.jit(metrics.ssim)  # eager JAX compiles op by op: slower for the test


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    yield from small_generated_data(input_pipeline, SMALL, str(tmp_path_factory.mktemp("mri")))


@pytest.fixture(scope="module")
def workload(small_data):
    return workload_on_files(MriWorkload, small_data[0])


# --- data ------------------------------------------------------------------------------
def test_splits_shapes_and_normalisation(small_data):
    _, splits = small_data
    for split, n in (("train", 64), ("validation", 24), ("test", 24)):
        arrays = splits[split]
        assert arrays["inputs"].shape == arrays["targets"].shape == (n, 32, 32)
        for key in ("mean", "std", "volume_max"):
            assert arrays[key].shape == (n,) and np.all(arrays[key] > 0)
        # Inputs are normalised by their own statistics, then clipped to +-6.
        assert np.allclose(arrays["inputs"].mean(axis=(1, 2)), 0.0, atol=0.05)
        assert np.abs(arrays["inputs"]).max() <= 6.0 and np.abs(arrays["targets"]).max() <= 6.0
        # volume_max is the clean image's maximum: the denormalised target reaches it
        # unless the +6 std clip (fastMRI's) cut the brightest pixels.
        std, mean = arrays["std"][:, None, None], arrays["mean"][:, None, None]
        clean_max = (arrays["targets"] * std + mean).max(axis=(1, 2))
        clipped = arrays["targets"].max(axis=(1, 2)) >= 6.0 - 1e-6
        assert np.all(clean_max <= arrays["volume_max"] * (1 + 1e-5))
        np.testing.assert_allclose(clean_max[~clipped], arrays["volume_max"][~clipped], rtol=1e-4)
    assert not np.allclose(splits["train"]["targets"][0], splits["train"]["targets"][1])


def test_generation_is_deterministic(small_data, tmp_path):
    _, cached = small_data
    a = input_pipeline.make_split(6, seed=5, eval_mask_seed=None)
    b = input_pipeline.make_split(6, seed=5, eval_mask_seed=None)
    c = input_pipeline.make_split(6, seed=6, eval_mask_seed=None)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.allclose(a["targets"], c["targets"])
    # The cached arrays equal a fresh generation.
    with pytest.MonkeyPatch.context() as mp:
        for name, value in SMALL.items():
            mp.setattr(input_pipeline, name, value)
        fresh = input_pipeline.generate()
    for split in fresh:
        for key in fresh[split]:
            np.testing.assert_array_equal(fresh[split][key], cached[split][key])


def test_column_mask_and_fft_conventions():
    mask = input_pipeline.column_mask(32, np.random.default_rng(0))
    assert mask.sum() == 8  # 4x acceleration
    assert mask[15] and mask[16]  # centre int(32 * 0.08) = 2 columns, pad = (32 - 2 + 1) // 2
    image = input_pipeline.random_phantom(np.random.default_rng(1))
    k = input_pipeline.kspace(image)
    np.testing.assert_allclose(np.sum(np.abs(k) ** 2), np.sum(image**2), rtol=1e-6)  # orthonormal
    full = input_pipeline.zero_filled(k, np.ones(32, bool))
    np.testing.assert_allclose(full, image, atol=1e-6)
    under = input_pipeline.zero_filled(k, mask)
    assert np.abs(under - image).mean() > 0.01


# --- SSIM and loss ---------------------------------------------------------------------
def test_ssim_hand_cases():
    # Constant images a and b: zero variances, so S = (2ab + C1) / (a^2 + b^2 + C1).
    a, b, data_range = 0.4, 0.6, 2.0
    c1 = (0.01 * data_range) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    x = jnp.full((1, 16, 16), a)
    y = jnp.full((1, 16, 16), b)
    np.testing.assert_allclose(ssim(x, y, jnp.array([data_range])), [expected], rtol=1e-5)
    # An image against itself scores 1; data range 0 (padding) is treated as 1.
    z = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16))
    np.testing.assert_allclose(ssim(z, z, jnp.array([1.0, 0.0])), [1.0, 1.0], atol=1e-5)


def test_ssim_matches_skimage():
    rng = np.random.default_rng(0)
    clean = np.stack([input_pipeline.random_phantom(rng) for _ in range(3)])
    noisy = clean + rng.normal(scale=0.1, size=clean.shape)
    noisy[2] = rng.uniform(size=(32, 32))  # unrelated image: low SSIM
    data_range = clean.max(axis=(1, 2))
    ours = np.asarray(
        ssim(jnp.asarray(noisy, jnp.float32), jnp.asarray(clean, jnp.float32), data_range)
    )
    theirs = [
        structural_similarity(noisy[i], clean[i], data_range=float(data_range[i])) for i in range(3)
    ]
    np.testing.assert_allclose(ours, theirs, atol=2e-4)
    assert ours[2] < 0.3 < ours[0]


def test_l1_loss_hand_case(workload):
    labels = jnp.zeros((3, 2, 2))
    logits = jnp.stack(
        [jnp.full((2, 2), 1.0), jnp.array([[1.0, -1.0], [0.0, 0.0]]), jnp.ones((2, 2))]
    )
    out = workload.loss_fn(labels, logits, jnp.array([1.0, 1.0, 0.0]))
    np.testing.assert_allclose(out["per_example"], [1.0, 0.5, 0.0])
    assert float(out["summed"]) == pytest.approx(1.5)
    assert float(out["n_valid_examples"]) == 2.0
    assert float(workload.loss_fn(labels, logits)["n_valid_examples"]) == 3.0


# --- model -----------------------------------------------------------------------------
def test_model_shapes_and_param_types(workload):
    params, state = workload.init_model_fn(jax.random.PRNGKey(0))
    assert state is None
    assert 30_000 < param_utils.num_params(params) < 300_000
    types = workload.model_params_types
    assert types["down_0"]["Conv_0"]["kernel"] == spec.ParameterType.CONV_WEIGHT
    assert types["up_transpose_0"]["ConvTranspose_0"]["kernel"] == spec.ParameterType.CONV_WEIGHT
    assert types["output"]["bias"] == spec.ParameterType.BIAS
    assert workload.param_shapes["output"]["kernel"] == spec.ShapeTuple((1, 1, 12, 1))
    assert workload.is_output_params("output") and not workload.is_output_params("down_0")
    model_fn = jax.jit(workload.model_fn, static_argnums=(3, 5, 6))
    x = {"inputs": jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32))}
    rng = jax.random.PRNGKey(2)
    evaluated, _ = model_fn(params, x, None, spec.ForwardPassMode.EVAL, rng, False, 0.5)
    assert evaluated.shape == (2, 32, 32)
    # Dropout is honoured in TRAIN mode only.
    dropped, _ = model_fn(params, x, None, spec.ForwardPassMode.TRAIN, rng, True, 0.5)
    assert dropped.shape == (2, 32, 32) and not np.allclose(dropped, evaluated, atol=1e-3)


def test_variant_and_size_knob():
    assert registry.get_workload_class("mri") is MriWorkload
    assert registry.get_workload_class("mri_tanh") is MriTanhWorkload
    assert MriTanhWorkload.base_workload == "mri"
    assert spec.higher_is_better(MriWorkload.target_metric_name)
    small = MriWorkload(size=0.5).model
    assert small.channels == 6 and MriTanhWorkload().model.activation is jnp.tanh


def test_train_step_lowers_loss_and_eval(workload, small_data):
    data_dir, _ = small_data
    rng = jax.random.PRNGKey(0)
    params, state = workload.init_model_fn(rng)
    batch = next(workload._build_input_queue(rng, "train", data_dir, 16))
    assert batch["inputs"].shape == (16, 32, 32) and "weights" not in batch
    opt = optax.adam(3e-3)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state):
        def loss_of(p):
            out, _ = workload.model_fn(
                p, batch, state, spec.ForwardPassMode.TRAIN, rng, True, dropout_rate=0.0
            )
            loss = workload.loss_fn(batch["targets"], out, batch.get("weights"))
            return loss["summed"] / loss["n_valid_examples"]

        loss, grads = jax.value_and_grad(loss_of)(params)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(4):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    assert losses[-1] < losses[0]

    results = workload.eval_model(16, params, state, rng, data_dir, None, global_step=4)
    for prefix in ("train", "validation", "test"):
        assert 0.0 < results[f"{prefix}/ssim"] < 1.0
        assert results[f"{prefix}/loss"] > 0.0
    assert results["validation/num_examples"] == 24 and results["test/num_examples"] == 24
    # eval_train is the training set's first num_eval_train_examples (here all 64 rows):
    # its SSIM equals a direct computation.
    arrays = workload.split_arrays("train")

    @jax.jit
    def direct_ssim(params, arrays):
        out, _ = workload.model_fn(params, arrays, None, spec.ForwardPassMode.EVAL, None, False)
        std, mean = arrays["std"][:, None, None], arrays["mean"][:, None, None]
        return metrics.ssim(out * std + mean, arrays["targets"] * std + mean, arrays["volume_max"])

    direct = direct_ssim(params, arrays)
    assert results["train/ssim"] == pytest.approx(float(jnp.mean(direct)), abs=1e-4)
