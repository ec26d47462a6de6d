"""fastmri (U-Net) and variants: parameter counts, SSIM against skimage, preprocessing,
loss, and a train step of a small U-Net."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, spec
from algoperf.workloads.fastmri import WORKLOADS, input_pipeline, metrics
from algoperf.workloads.fastmri.model import UNet

# The spec sheet's counts (hand-derived there; ours agree exactly).
SHEET_PARAMS = {
    "fastmri": 7_756_097,
    "fastmri_model_size": 7_692_929,
    "fastmri_tanh": 7_756_097,
    "fastmri_layernorm": 7_761_985,
}


@pytest.mark.parametrize("name", sorted(SHEET_PARAMS))
def test_param_count_matches_sheet(name):
    workload = WORKLOADS[name]()
    params, _ = jax.eval_shape(lambda: workload.init_model_fn(jax.random.PRNGKey(0)))
    assert param_utils.num_params(params) == SHEET_PARAMS[name]
    assert params["Conv_0"]["kernel"].shape[-1] == 1 and "bias" in params["Conv_0"]
    assert workload.is_output_params("Conv_0")


def test_constants():
    base = WORKLOADS["fastmri"]
    assert (base.num_eval_train_examples, base.eval_batch_size, base.step_hint) == (3_584, 256, 18_094)
    assert WORKLOADS["fastmri_layernorm"].base_workload == "fastmri"


def test_ssim_matches_skimage():
    """Our port equals skimage's structural_similarity (7x7 uniform window, sample
    covariance, data_range = volume max) on the denormalised images, interior mean."""
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    target = rng.normal(size=(2, 24, 20)).astype(np.float32)
    pred = (target + 0.5 * rng.normal(size=target.shape)).astype(np.float32)
    mean, std, vmax = np.array([0.3, 1.0], np.float32), np.array([2.0, 0.5], np.float32), np.array([9.0, 0.0], np.float32)
    ours = np.asarray(metrics.ssim(jnp.asarray(pred), jnp.asarray(target), mean, std, vmax))
    for k in range(2):
        x, y = pred[k] * std[k] + mean[k], target[k] * std[k] + mean[k]
        _, full = structural_similarity(
            y.astype(np.float64), x.astype(np.float64), data_range=vmax[k] or 1.0, full=True
        )
        np.testing.assert_allclose(ours[k], full[3:-3, 3:-3].mean(), rtol=1e-4, atol=1e-5)
    same = metrics.ssim(jnp.asarray(target), jnp.asarray(target), mean, std, vmax)
    np.testing.assert_allclose(same, 1.0, rtol=1e-5)


def test_mask_and_preprocess():
    rng = np.random.default_rng(0)
    mask = input_pipeline.undersampling_mask(368, rng)
    n_low = int(368 * 0.08)  # 29 centre columns
    pad = (368 - n_low + 1) // 2
    assert mask[pad : pad + n_low].all()
    assert 0.15 < mask.mean() < 0.35  # about a quarter of the columns
    kspace = (rng.normal(size=(640, 368)) + 1j * rng.normal(size=(640, 368))).astype(np.complex64)
    target = rng.uniform(size=(320, 320)).astype(np.float32)
    ex = input_pipeline.preprocess_slice(kspace, target, 3.0, np.random.default_rng(1))
    assert ex["inputs"].shape == ex["targets"].shape == (320, 320)
    assert np.abs(ex["inputs"]).max() <= 6 and ex["volume_max"] == 3.0
    np.testing.assert_allclose(ex["targets"], np.clip((target - ex["mean"]) / ex["std"], -6, 6), rtol=1e-5)
    # The same mask seed gives the same example (fixed mask per example position).
    again = input_pipeline.preprocess_slice(kspace, target, 3.0, np.random.default_rng(1))
    np.testing.assert_array_equal(ex["inputs"], again["inputs"])


def test_loss_hand_computed_and_missing_data(tmp_path):
    workload = WORKLOADS["fastmri"]()
    target = jnp.zeros((2, 2, 2))
    pred = jnp.array([[[1.0, -1.0], [2.0, 0.0]], [[4.0, 4.0], [4.0, 4.0]]])
    out = workload.loss_fn(target, pred, jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(out["per_example"], [1.0, 0.0])
    assert float(out["summed"]) == 1.0 and float(out["n_valid_examples"]) == 1.0
    with pytest.raises(spec.DataNotFoundError, match="--data-dir"):
        workload._build_input_queue(jax.random.PRNGKey(0), "train", None, 8)
    with pytest.raises(spec.DataNotFoundError, match="knee_singlecoil"):
        workload._build_input_queue(jax.random.PRNGKey(0), "validation", str(tmp_path), 8)


def test_small_unet_train_step_lowers_loss():
    """One jitted SGD step of a 1-pool, 2-channel U-Net on 8 x 8 images lowers the L1 loss."""
    model = UNet(num_channels=2, num_pool_layers=1)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 8, 8)).astype(np.float32))
    y = jnp.tanh(x)
    params = model.init(jax.random.PRNGKey(0), x)["params"]

    def loss(p):
        return jnp.mean(jnp.abs(model.apply({"params": p}, x) - y))

    @jax.jit
    def step(p):
        value, grads = jax.value_and_grad(loss)(p)
        return jax.tree.map(lambda w, g: w - 0.05 * g, p, grads), value

    new_params, before = step(params)
    _, after = step(new_params)
    assert float(after) < float(before)


def test_channel_dropout_takes_effect():
    """Decision: dropout_rate reaches the blocks (the reference JAX U-Net ignores it)."""
    model = UNet(num_channels=4, num_pool_layers=1)
    x = jnp.ones((1, 8, 8))
    params = model.init(jax.random.PRNGKey(0), x)
    run = lambda rate: model.apply(params, x, train=True, dropout_rate=rate, rngs={"dropout": jax.random.PRNGKey(3)})  # noqa: E731
    assert not np.allclose(run(0.5), run(0.0))
    np.testing.assert_allclose(run(0.0), model.apply(params, x, train=False))
