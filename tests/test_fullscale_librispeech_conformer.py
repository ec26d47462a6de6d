"""librispeech_conformer and variants: parameter counts, frontend, SpecAugment, CTC
normalisation, greedy decoding, WER, the npy data layout, and a small Conformer's train step."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, spec
from algoperf.workloads.librispeech_conformer import WORKLOADS, frontend, input_pipeline, metrics
from algoperf.workloads.librispeech_conformer.model import Conformer

# The spec sheet's counts (hand-derived there, and checked JAX vs PyTorch upstream; ours agree).
SHEET_PARAMS = {
    "librispeech_conformer": 32_321_792,
    "librispeech_conformer_attention_temperature": 32_321_792,
    "librispeech_conformer_layernorm": 32_317_696,
    "librispeech_conformer_gelu": 32_321_792,
}


@pytest.mark.parametrize("name", sorted(SHEET_PARAMS))
def test_param_count_matches_sheet(name):
    workload = WORKLOADS[name]()
    params, state = jax.eval_shape(lambda: workload.init_model_fn(jax.random.PRNGKey(0)))
    assert param_utils.num_params(params) == SHEET_PARAMS[name]
    assert param_utils.num_params(state["batch_stats"]) == 4 * 2 * 512
    assert params["Dense_0"]["kernel"].shape == (512, 1024) and workload.is_output_params("Dense_0")


def test_frontend_frames_and_paddings():
    n = 16_000
    lengths = [16_000, 8_001, 160]
    audio = np.zeros((3, n), np.float32)
    pad = np.ones((3, n), np.float32)
    for i, length in enumerate(lengths):
        audio[i, :length] = np.random.default_rng(i).normal(size=length) * 1000
        pad[i, :length] = 0.0
    feats, frame_pad = frontend.log_mel(jnp.asarray(audio), jnp.asarray(pad))
    t = frontend.num_frames(n)
    assert feats.shape == (3, t, 80) and t == (16_000 - 401) // 160 + 1
    assert frontend.num_frames(320_000) == 1998
    valid = np.sum(1 - np.asarray(frame_pad), axis=1)
    assert valid.tolist() == [min(math.ceil(length / 160), t) for length in lengths]


def test_mel_matrix_peaks_at_tone():
    """A 1 kHz tone puts its largest mel energy in the filter centred nearest 1 kHz."""
    weights = frontend.mel_weight_matrix()
    assert weights.shape == (257, 80) and np.all(weights[0] == 0)
    sr, n = 16_000, 4_000
    audio = (10_000 * np.sin(2 * np.pi * 1000 * np.arange(n) / sr)).astype(np.float32)[None]
    feats, _ = frontend.log_mel(jnp.asarray(audio), jnp.zeros_like(audio))
    logmel = np.asarray(feats)[0].mean(0) * frontend.MEL_STD + frontend.MEL_MEAN
    edges = np.linspace(frontend.hertz_to_mel(125), frontend.hertz_to_mel(7600), 82)
    centre_hz = 700 * np.expm1(edges[1:-1] / 1127)
    assert np.argmax(logmel) == np.argmin(np.abs(centre_hz - 1000))


def test_spec_augment_masks_bands_and_keeps_valid_shape():
    x = jnp.ones((4, 200, 80))
    paddings = jnp.zeros((4, 200)).at[:, 150:].set(1.0)
    out = np.asarray(frontend.spec_augment(jax.random.PRNGKey(0), x, paddings))
    assert set(np.unique(out)) <= {0.0, 1.0} and out.min() == 0.0
    zero_cols = (out == 0).all(axis=1)  # fully masked mel bins
    assert zero_cols.sum(axis=1).max() <= 2 * 27
    zero_rows = (out == 0).all(axis=2)
    assert zero_rows.sum(axis=1).max() <= 10 * max(int(0.05 * 150), 1)


def test_greedy_decode_and_wer_hand_computed():
    # frames: 3 3 0 3 5 5 | padding 7 -> 3, 3, 5 (a blank separates the repeated 3)
    frames = np.array([[3, 3, 0, 3, 5, 5, 7]])
    logits = np.eye(8)[frames]
    paddings = np.array([[0, 0, 0, 0, 0, 0, 1]])
    assert metrics.greedy_decode(logits, paddings) == [[3, 3, 5]]
    assert metrics.word_errors("a b c".split(), "a x c d".split()) == 2
    # 2 errors over 4 words, plus 1 error over an empty reference counted as 1 word.
    assert metrics.corpus_wer(["a b  c", "z"], ["a x c d", ""]) == (3, 5)


def test_ctc_loss_normalised_per_token():
    workload = WORKLOADS["librispeech_conformer"]()
    logits = jnp.zeros((2, 6, 5))  # uniform: every path has probability 5^-6
    logit_pad = jnp.zeros((2, 6))
    labels = jnp.array([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]])
    label_pad = jnp.array([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    out = workload.loss_fn((labels, label_pad), (logits, logit_pad))
    assert float(out["n_valid_examples"]) == 3.0  # tokens, not utterances
    # Alignments of 6 frames to "1 2": C(6+1, 3) - ... counted by brute force.
    import itertools

    def count(label):
        n = 0
        for path in itertools.product(range(5), repeat=6):
            collapsed = [p for i, p in enumerate(path) if p != 0 and (i == 0 or p != path[i - 1])]
            n += collapsed == label
        return n

    expected = [-math.log(count([1, 2]) * 5.0**-6), -math.log(count([3]) * 5.0**-6)]
    np.testing.assert_allclose(out["per_example"], expected, rtol=1e-4)
    masked = workload.loss_fn((labels, label_pad), (logits, logit_pad), jnp.array([1.0, 0.0]))
    assert float(masked["n_valid_examples"]) == 2.0


def _write_split(root, name, ids, rng):
    (root / name).mkdir(parents=True)
    (root / f"{name}.csv").write_text(",id\n" + "".join(f"{i},{u}\n" for i, u in enumerate(ids)))
    for u in ids:
        np.save(root / name / f"{u}_audio.npy", rng.integers(-3000, 3000, int(rng.integers(500, 4000))).astype(np.int64))
        np.save(root / name / f"{u}_targets.npy", np.array([5, 6, 2], np.int32))


def test_npy_layout_batches_and_missing_data(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("dev-clean", "dev-other"):
        _write_split(tmp_path / "librispeech", name, [f"{name}-{k}" for k in range(3)], rng)
    prefixes = input_pipeline.utterances(str(tmp_path), "validation")  # finds the librispeech/ folder
    assert len(prefixes) == 6
    batch = next(input_pipeline.batches(prefixes[:3], 4, None, False, False))
    audio, audio_pad = batch["inputs"]
    tokens, token_pad = batch["targets"]
    assert audio.shape == (4, 320_000) and tokens.shape == (4, 256)
    assert batch["weights"].tolist() == [1, 1, 1, 0] and audio_pad[3].all()
    assert tokens[0, :3].tolist() == [5, 6, 2] and token_pad[0].sum() == 253
    first = np.load(prefixes[0] + "_audio.npy")
    assert (audio[0, : len(first)] == first).all() and audio_pad[0].sum() == 320_000 - len(first)
    workload = WORKLOADS["librispeech_conformer"]()
    with pytest.raises(spec.DataNotFoundError, match="--data-dir"):
        workload._build_input_queue(jax.random.PRNGKey(0), "train", None, 8)
    with pytest.raises(spec.DataNotFoundError, match="train-clean-100.csv"):
        workload._build_input_queue(jax.random.PRNGKey(0), "train", str(tmp_path), 8)
    with pytest.raises(spec.DataNotFoundError, match="spm_model.vocab"):
        workload.detokenize(str(tmp_path))


@pytest.mark.slow
def test_small_conformer_train_step_lowers_loss():
    """Slow only from compiling (about 15 s on an idle core, a minute on busy ones)."""
    model = Conformer(vocab_size=8, dim=16, num_heads=2, num_blocks=1, ffn_hidden=32, subsampling_channels=2)
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
