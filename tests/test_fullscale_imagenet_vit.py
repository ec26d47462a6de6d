"""imagenet_vit (ViT-S/16) and variants: architecture parity, constants, dropout semantics,
one train step, and one train batch (with mixup) plus one eval through the real pipeline.

Full-size models are only built with ``jax.eval_shape``; computation uses the same module
classes at width 32 / depth 2 with 8x8 patches on 32x32 images.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, registry, spec
from algoperf.workloads.imagenet_vit.model import posemb_sincos_2d
from tests.test_fullscale_imagenet_resnet import write_imagenet_folders

SHEET = {  # spec sheet 4.2: params, validation target, test target
    "imagenet_vit": (22_122_472, 0.77309, 0.6519),
    "imagenet_vit_glu": (50_452_456, 0.75738, 0.6359),
    "imagenet_vit_post_ln": (22_121_704, 0.75312, 0.6286),
    "imagenet_vit_map": (23_896_552, 0.77113, 0.6523),
}


@pytest.mark.parametrize("name", sorted(SHEET))
def test_vit_parameter_count_matches_the_spec_sheet(name):
    """post_ln: the sheet's count was made with the reference's broken line fixed (G7); we
    implement that intended maths, so the count is the sheet's, not a hand-derived one."""
    workload = registry.get_workload(name)
    params, state = jax.eval_shape(lambda: workload.init_model_fn(jax.random.PRNGKey(0)))
    assert state is None
    assert param_utils.num_params(params) == SHEET[name][0]
    assert ("encoder_layernorm" in params["Transformer"]) == (name != "imagenet_vit_post_ln")
    assert ("MAPHead_0" in params) == (name == "imagenet_vit_map")
    mlp = params["Transformer"]["encoderblock_0"]["MlpBlock_3"]
    assert sorted(mlp) == (["Dense_0", "Dense_1", "Dense_2"] if name.endswith("glu") else ["Dense_0", "Dense_1"])
    assert workload.is_output_params("head") and not workload.is_output_params("pre_logits")


def test_vit_parameter_type_census():
    workload = registry.get_workload("imagenet_vit")
    jax.eval_shape(lambda: workload.init_model_fn(jax.random.PRNGKey(0)))
    types = jax.tree.leaves(workload.model_params_types)
    P = spec.ParameterType
    expected = {P.CONV_WEIGHT: 1, P.WEIGHT: 26, P.BIAS: 27, P.LAYER_NORM_SCALE: 25, P.LAYER_NORM_BIAS: 25,
                P.ATTENTION_Q: 12, P.ATTENTION_K: 12, P.ATTENTION_V: 12, P.ATTENTION_OUT: 12, P.ATTENTION_BIAS: 48}
    assert {t: types.count(t) for t in set(types)} == expected


@pytest.mark.parametrize("name", sorted(SHEET))
def test_constants_are_algoperfs(name):
    w = registry.get_workload(name)
    assert (w.validation_target_value, w.test_target_value) == SHEET[name][1:]
    assert (w.max_allowed_runtime_sec, w.eval_period_time_sec, w.step_hint) == (69_768, 420, 167_999)
    assert (w.eval_batch_size, w.num_eval_train_examples) == (2048, 51_200)
    assert (w.num_train_examples, w.num_validation_examples, w.num_test_examples) == (1_281_167, 50_000, 10_000)
    assert w.base_workload == (None if name == "imagenet_vit" else "imagenet_vit")
    assert w.data_source == "download" and w.target_metric_name == "accuracy"


def test_sincos_position_embedding_by_hand():
    pe = posemb_sincos_2d(2, 3, 8)  # q = 2, omega = (1, 1/10000)
    assert pe.shape == (1, 6, 8)
    y, x = 1, 2  # token index 1*3 + 2 = 5
    omega = np.array([1.0, 1e-4])
    expected = np.concatenate([np.sin(x * omega), np.cos(x * omega), np.sin(y * omega), np.cos(y * omega)])
    np.testing.assert_allclose(pe[0, 5], expected, rtol=1e-6)


@pytest.fixture(scope="module")
def small():
    w = registry.get_workload("imagenet_vit")
    w._model = w.model.clone(width=32, depth=2, mlp_dim=64, num_heads=2, patch_size=(8, 8))
    w.init_shape = (32, 32, 3)
    params, state = w.init_model_fn(jax.random.PRNGKey(0), dropout_rate=0.1)
    return w, params, state


def test_dropout_only_in_train_mode_and_a_train_step_lowers_the_loss(small):
    w, params, state = small
    # The zero-initialised head makes every logit 0: perturb it so outputs depend on the body.
    params = dict(params, head={"kernel": jax.random.normal(jax.random.PRNGKey(3), params["head"]["kernel"].shape) * 0.1,
                                "bias": params["head"]["bias"]})
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 32, 32, 3))
    batch = {"inputs": x, "targets": jnp.arange(4) % 5}
    train, evaluate = spec.ForwardPassMode.TRAIN, spec.ForwardPassMode.EVAL

    @jax.jit
    def step(p, rng):
        def loss(q):
            logits, _ = w.model_fn(q, batch, None, train, rng, True)
            out = w.loss_fn(batch["targets"], logits)
            return out["summed"] / out["n_valid_examples"]

        value, grads = jax.value_and_grad(loss)(p)
        eval_logits, _ = w.model_fn(p, batch, None, evaluate, None, False)
        train_logits, _ = w.model_fn(p, batch, None, train, rng, True)
        return value, jax.tree.map(lambda a, g: a - 0.5 * g, p, grads), eval_logits, train_logits

    l0, p1, eval_logits, train_logits = step(params, jax.random.PRNGKey(7))
    assert not np.allclose(eval_logits, train_logits)  # dropout 0.1 from init_model_fn acts in TRAIN
    l1, _, eval_again, _ = step(p1, jax.random.PRNGKey(8))
    assert float(l1) < float(l0)


def test_train_batch_with_mixup_and_eval_through_the_real_pipeline(tmp_path, small):
    write_imagenet_folders(tmp_path)
    w, params, state = small
    w.num_validation_examples = 6
    batch = next(w._build_input_queue(jax.random.PRNGKey(1), "train", str(tmp_path), 4))
    assert batch["inputs"].shape == (4, 32, 32, 3)
    targets = np.asarray(batch["targets"])
    assert targets.shape == (4, 1000)  # mixup: dense targets
    np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-5)
    assert np.count_nonzero(targets[:, 2:]) == 0
    loss = w.loss_fn(batch["targets"], jnp.zeros((4, 1000)))
    np.testing.assert_allclose(float(loss["summed"]), 4 * np.log(1000), rtol=1e-5)
    metrics = w._eval_model_on_split("validation", 6, 4, params, state, jax.random.PRNGKey(2), str(tmp_path))
    # The head starts at zero: uniform logits, loss log(1000); argmax picks class 0 = 3 of 6 labels.
    assert metrics["loss"] == pytest.approx(np.log(1000), rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(0.5)
