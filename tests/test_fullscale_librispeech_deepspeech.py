"""librispeech_deepspeech and variants: parameter counts, model state, the backward LSTM's
padding handling, and a small DeepSpeech's train step and evaluation on files prepared from
LibriSpeech-layout archives."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, spec
from algoperf.workloads.librispeech_conformer import prepare
from algoperf.workloads.librispeech_deepspeech import WORKLOADS
from algoperf.workloads.librispeech_deepspeech.model import BiLSTM
from tests.test_fullscale_librispeech_conformer import (
    VOCAB,
    small_workload,
    speech_batch,
    train_and_evaluate,
    write_librispeech_archives,
)

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


# --- a small DeepSpeech on files made by `algoperf data prepare librispeech` ----------------

SMALL_DEEPSPEECH = {"dim": 8, "num_lstm_layers": 1, "num_ffn_layers": 1, "lstm_units": 4, "subsampling_channels": 2}


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    source = tmp_path_factory.mktemp("librispeech_archives")
    write_librispeech_archives(source)
    data_dir = tmp_path_factory.mktemp("librispeech_data")
    prepare.prepare(data_dir, source, vocab_size=str(VOCAB))  # the CLI path: the Conformer's tests
    return data_dir


@pytest.mark.slow
@pytest.mark.parametrize("name", ["librispeech_deepspeech", "librispeech_deepspeech_norm_and_spec_aug"])
def test_small_deepspeech_trains_and_evaluates_on_prepared_files(prepared_dir, name):
    """Slow only from compiling the LSTM scans (tens of seconds on a busy core). The batch-norm
    model and the LayerNorm one (no model state) both run the pipeline."""
    train_and_evaluate(small_workload(WORKLOADS[name], SMALL_DEEPSPEECH), prepared_dir)


# --- data parallel ---------------------------------------------------------------------------

def data_parallel_case() -> tuple[spec.Workload, dict]:
    workload = WORKLOADS["librispeech_deepspeech"](model_overrides={**SMALL_DEEPSPEECH, "vocab_size": 16})
    return workload, speech_batch(16)
