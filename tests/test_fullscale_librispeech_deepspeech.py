"""librispeech_deepspeech and variants: parameter counts, model state, the backward LSTM's
padding handling, and a small DeepSpeech's train step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils
from algoperf.workloads.librispeech_conformer import metrics
from algoperf.workloads.librispeech_deepspeech import WORKLOADS
from algoperf.workloads.librispeech_deepspeech.model import BiLSTM, DeepSpeech

# The spec sheet's JAX counts (hand-derived there; ours agree exactly). PyTorch's nn.LSTM
# keeps two biases per gate (+12,288); the JAX reference and we keep one.
SHEET_PARAMS = {
    "librispeech_deepspeech": 18_381_312,
    "librispeech_deepspeech_tanh": 18_381_312,
    "librispeech_deepspeech_no_resnet": 18_381_312,
    "librispeech_deepspeech_norm_and_spec_aug": 18_380_288,
}


@pytest.mark.parametrize("name", sorted(SHEET_PARAMS))
def test_param_count_matches_sheet(name):
    workload = WORKLOADS[name]()
    params, state = jax.eval_shape(lambda: workload.init_model_fn(jax.random.PRNGKey(0)))
    assert param_utils.num_params(params) == SHEET_PARAMS[name]
    if name.endswith("norm_and_spec_aug"):
        assert state == {} and workload.eval_batch_size == 128
    else:
        assert param_utils.num_params(state["batch_stats"]) == 9 * 1024
    assert workload.is_output_params("Dense_out") and params["Dense_out"]["kernel"].shape == (512, 1024)


def test_backward_lstm_ignores_padding_content():
    """Valid outputs do not depend on what the padded frames hold (the backward pass
    reverses only the valid prefix)."""
    lstm = BiLSTM(units=4)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 6, 3)).astype(np.float32))
    paddings = jnp.array([[0.0, 0, 0, 0, 1, 1]])
    params = lstm.init(jax.random.PRNGKey(0), x, paddings)
    noisy = x.at[:, 4:].set(100.0)
    a, b = lstm.apply(params, x, paddings), lstm.apply(params, noisy, paddings)
    np.testing.assert_allclose(a[:, :4], b[:, :4], rtol=1e-5, atol=1e-6)
    # ...while the backward half does see later valid frames.
    later = x.at[:, 3].set(5.0)
    assert not np.allclose(lstm.apply(params, later, paddings)[:, 0, 4:], a[:, 0, 4:])


@pytest.mark.slow
def test_small_deepspeech_train_step_lowers_loss():
    """Slow only from compiling the LSTM scans (tens of seconds on busy cores)."""
    model = DeepSpeech(vocab_size=8, dim=8, num_lstm_layers=1, num_ffn_layers=1, lstm_units=4, subsampling_channels=2)
    rng = np.random.default_rng(0)
    audio = jnp.asarray(rng.normal(size=(2, 2_000)).astype(np.float32) * 1000)
    pad = jnp.zeros_like(audio)
    labels = jnp.array([[1, 2, 3], [4, 5, 0]])
    label_pad = jnp.array([[0.0, 0, 0], [0, 0, 1]])
    variables = model.init(jax.random.PRNGKey(0), audio, pad)

    def loss(p):
        (logits, lpad), _ = model.apply(
            {"params": p, "batch_stats": variables["batch_stats"]}, audio, pad, train=True, dropout_rate=0.0,
            rngs={"dropout": jax.random.PRNGKey(1)}, mutable=["batch_stats"],
        )
        return jnp.mean(metrics.ctc_loss(logits, lpad, labels, label_pad))

    @jax.jit
    def step(p):
        value, grads = jax.value_and_grad(loss)(p)
        return jax.tree.map(lambda w, g: w - 0.05 * g, p, grads), value

    params, before = step(variables["params"])
    _, after = step(params)
    assert np.isfinite(float(before)) and float(after) < float(before)
