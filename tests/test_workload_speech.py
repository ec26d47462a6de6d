"""The speech workload: data, Conformer, CTC loss, greedy decoding, WER, train and eval."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algoperf import param_utils, registry, spec
from algoperf.workloads.speech import input_pipeline, metrics
from algoperf.workloads.speech.workload import SpeechGeluWorkload, SpeechWorkload
from tests.workload_checks import small_generated_data, workload_on_files

SMALL = {"NUM_TRAIN": 48, "NUM_VALIDATION": 20, "NUM_TEST": 20}
T = input_pipeline.MAX_FRAMES
V = input_pipeline.VOCAB_SIZE


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    yield from small_generated_data(input_pipeline, SMALL, str(tmp_path_factory.mktemp("speech")))


@pytest.fixture(scope="module")
def workload(small_data):
    return workload_on_files(SpeechWorkload, small_data[0])


# --- data ------------------------------------------------------------------------------
def test_lexicon_tokens_and_tones():
    assert all(set(word) <= set(input_pipeline.ALPHABET) for word in input_pipeline.LEXICON)
    assert len(set(input_pipeline.LEXICON)) == len(input_pipeline.LEXICON) > 100
    tones = {input_pipeline.letter_tones(c) for c in input_pipeline.ALPHABET}
    assert len(tones) == len(input_pipeline.ALPHABET)  # every letter has its own tone pair
    ids = input_pipeline.encode("tree on")
    assert ids.tolist() == [
        2 + input_pipeline.ALPHABET.index("t"),
        2 + input_pipeline.ALPHABET.index("r"),
        2 + input_pipeline.ALPHABET.index("e"),
        2 + input_pipeline.ALPHABET.index("e"),
        input_pipeline.SPACE_ID,
        2 + input_pipeline.ALPHABET.index("o"),
        2 + input_pipeline.ALPHABET.index("n"),
    ]
    assert input_pipeline.decode(np.concatenate([[0], ids, [0, 0]])) == "tree on"


def test_log_mel_of_a_tone_peaks_at_its_mel_bin():
    sr = input_pipeline.SAMPLE_RATE
    audio = np.sin(2 * np.pi * 1000.0 * np.arange(sr // 4) / sr)
    features = input_pipeline.log_mel(audio)
    hop, frame = input_pipeline.HOP_LENGTH, input_pipeline.FRAME_LENGTH
    assert features.shape == (1 + (sr // 4 - frame) // hop, input_pipeline.NUM_MEL)
    fb = input_pipeline.mel_filterbank()
    # The loudest mel bin is the one whose filter weighs the 1000 Hz FFT bin most.
    fft_bin = round(1000.0 / (sr / input_pipeline.FFT_SIZE))
    assert np.all(features.argmax(axis=1) == fb[fft_bin].argmax())


def test_splits_shapes_and_paddings(small_data):
    _, splits = small_data
    for split, n in (("train", 48), ("validation", 20), ("test", 20)):
        a = splits[split]
        assert a["inputs"].shape == (n, T, input_pipeline.NUM_MEL)
        assert a["input_paddings"].shape == (n, T)
        assert (
            a["targets"].shape == a["target_paddings"].shape == (n, input_pipeline.MAX_TARGET_LEN)
        )
        assert a["targets"].dtype == np.int32
        valid = a["input_paddings"] == 0
        # Paddings are a suffix; padded frames are zero; every utterance has 2-4 words.
        assert np.all(np.diff(a["input_paddings"], axis=1) >= 0)
        assert np.all(a["inputs"][~valid] == 0)
        assert np.all(np.diff(a["target_paddings"], axis=1) >= 0)
        assert np.all(a["targets"][a["target_paddings"] == 1] == 0)
        for ids, pad in zip(a["targets"], a["target_paddings"], strict=True):
            words = metrics.ids_to_text(ids, pad).split()
            assert 2 <= len(words) <= 4 and all(w in input_pipeline.LEXICON for w in words)
    # Train features are normalised per mel bin over the valid frames.
    train = splits["train"]
    frames = train["inputs"][train["input_paddings"] == 0]
    np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=0.1)
    np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=0.1)


def test_generation_is_deterministic(small_data):
    _, cached = small_data
    a = input_pipeline.make_split(4, seed=3)
    b = input_pipeline.make_split(4, seed=3)
    c = input_pipeline.make_split(4, seed=4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["targets"], c["targets"])
    with pytest.MonkeyPatch.context() as mp:
        for name, value in SMALL.items():
            mp.setattr(input_pipeline, name, value)
        fresh = input_pipeline.generate()
    for split in fresh:
        for key in fresh[split]:
            np.testing.assert_array_equal(fresh[split][key], cached[split][key])


# --- WER, decoding, CTC ------------------------------------------------------------------
def test_edit_distance_and_wer_hand_cases():
    assert metrics.edit_distance([], []) == 0
    assert metrics.edit_distance(["a", "b", "c"], ["a", "b", "c"]) == 0
    assert metrics.edit_distance(["a", "b", "c"], ["a", "x", "c", "d"]) == 2  # 1 sub + 1 ins
    assert metrics.edit_distance(["a", "b", "c"], ["b", "c"]) == 1  # 1 deletion
    assert metrics.edit_distance(["kitten"], []) == 1
    assert metrics.edit_distance(["a", "b"], ["b", "a"]) == 2
    assert metrics.word_errors("the cat sat", "the cat sat down") == (1, 3)
    assert metrics.word_errors("", "") == (0, 1)  # an empty reference counts as one word
    # Corpus WER pools errors: (1 + 2) / (3 + 2), not the mean of 1/3 and 2/2.
    wer = metrics.corpus_wer(["the cat sat", "a dog"], ["the cat sat down", "one"])
    assert wer == pytest.approx(3 / 5)


def test_greedy_decoding_hand_case():
    a, b = 2, 3
    # Frames: a a _ a b b _ | padded (b), where _ is blank: decodes to "a a b".
    frames = [a, a, 0, a, b, b, 0, b]
    logits = jax.nn.one_hot(jnp.array([frames]), V) * 5.0
    paddings = jnp.array([[0, 0, 0, 0, 0, 0, 0, 1]], jnp.float32)
    labels = metrics.greedy_frame_labels(logits, paddings)
    np.testing.assert_array_equal(labels, [[a, 0, 0, a, b, 0, 0, 0]])
    (hyp,) = metrics.compact(np.asarray(labels))
    assert hyp.tolist() == [a, a, b]


def test_ctc_loss_hand_case(workload):
    # Two frames, label [a]: alignments (a,a), (a,_), (_,a), so
    # p = pa1 pa2 + pa1 p_2 + p_1 pa2 with per-frame softmax probabilities.
    a = 2
    logits = jnp.log(
        jnp.array(
            [
                [
                    [0.5, 0.0, 0.3] + [0.2 / (V - 3)] * (V - 3),
                    [0.1, 0.0, 0.6] + [0.3 / (V - 3)] * (V - 3),
                ]
            ]
        )
        + 1e-12
    )
    blank1, a1, blank2, a2 = 0.5, 0.3, 0.1, 0.6
    expected = -math.log(a1 * a2 + a1 * blank2 + blank1 * a2)
    labels = jnp.array([[a, 0, 0]], jnp.int32)
    label_paddings = jnp.array([[0.0, 1.0, 1.0]])
    logit_paddings = jnp.zeros((1, 2))
    out = workload.loss_fn((labels, label_paddings), (logits, logit_paddings))
    assert float(out["summed"]) == pytest.approx(expected, rel=1e-4)
    assert float(out["n_valid_examples"]) == 1.0
    # A mask drops an utterance from both the sum and the token count.
    logits2 = jnp.concatenate([logits, logits])
    labels2 = jnp.array([[a, 0, 0], [a, a, 0]], jnp.int32)
    pads2 = jnp.array([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    masked = workload.loss_fn(
        (labels2, pads2), (logits2, jnp.zeros((2, 2))), mask_batch=jnp.array([1.0, 0.0])
    )
    assert float(masked["summed"]) == pytest.approx(expected, rel=1e-4)
    assert float(masked["n_valid_examples"]) == 1.0
    unmasked = workload.loss_fn((labels2, pads2), (logits2, jnp.zeros((2, 2))))
    assert float(unmasked["n_valid_examples"]) == 3.0


# --- model, train step, eval -----------------------------------------------------------
def test_model_shapes_param_types_and_batch_norm_state(workload, small_data):
    data_dir, _ = small_data
    params, state = workload.init_model_fn(jax.random.PRNGKey(0))
    assert 50_000 < param_utils.num_params(params) < 500_000
    types = workload.model_params_types
    block = types["block_0"]
    assert block["attention"]["query"]["kernel"] == spec.ParameterType.ATTENTION_Q
    assert block["attention"]["out"]["kernel"] == spec.ParameterType.ATTENTION_OUT
    assert block["conv_module"]["batch_norm"]["scale"] == spec.ParameterType.BATCH_NORM_SCALE
    assert block["conv_module"]["depthwise_conv"]["kernel"] == spec.ParameterType.CONV_WEIGHT
    assert block["ffn_1"]["ln"]["scale"] == spec.ParameterType.LAYER_NORM_SCALE
    assert types["output"]["kernel"] == spec.ParameterType.WEIGHT
    assert workload.is_output_params("output") and not workload.is_output_params("block_0")
    assert set(state) == {"batch_stats"}

    batch = next(workload._build_input_queue(jax.random.PRNGKey(0), "train", data_dir, 8))
    features, paddings = batch["inputs"]
    labels, label_paddings = batch["targets"]
    assert features.shape == (8, T, input_pipeline.NUM_MEL) and paddings.shape == (8, T)
    assert labels.shape == label_paddings.shape == (8, input_pipeline.MAX_TARGET_LEN)

    model_fn = jax.jit(workload.model_fn, static_argnums=(3, 5))
    (logits, logit_paddings), new_state = model_fn(
        params, batch, state, spec.ForwardPassMode.TRAIN, jax.random.PRNGKey(1), True, 0.0
    )
    assert logits.shape == (8, T // 4, V) and logit_paddings.shape == (8, T // 4)
    np.testing.assert_array_equal(logit_paddings, paddings[:, ::4])
    # Training updates the running batch-norm statistics.
    before = state["batch_stats"]["block_0"]["conv_module"]["batch_norm"]["mean"]
    after = new_state["batch_stats"]["block_0"]["conv_module"]["batch_norm"]["mean"]
    assert not np.allclose(before, after)


def test_variant_and_size_knob():
    assert registry.get_workload_class("speech") is SpeechWorkload
    assert registry.get_workload_class("speech_gelu") is SpeechGeluWorkload
    assert SpeechGeluWorkload.base_workload == "speech"
    assert not spec.higher_is_better(SpeechWorkload.target_metric_name)
    assert SpeechWorkload.loss_type == spec.LossType.CTC_LOSS
    assert SpeechWorkload(size=2.0).model.dim == 128
    assert SpeechGeluWorkload().model.activation is not SpeechWorkload().model.activation


def test_train_step_lowers_loss_and_eval(workload, small_data):
    data_dir, _ = small_data
    rng = jax.random.PRNGKey(0)
    params, model_state = workload.init_model_fn(rng)
    batch = next(workload._build_input_queue(rng, "train", data_dir, 16))
    opt = optax.adam(3e-3)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, model_state, opt_state, dropout_rate):
        def loss_of(p):
            logits, new_state = workload.model_fn(
                p, batch, model_state, spec.ForwardPassMode.TRAIN, rng, True, dropout_rate
            )
            loss = workload.loss_fn(batch["targets"], logits, batch.get("weights"))
            return loss["summed"] / loss["n_valid_examples"], new_state

        (loss, new_state), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(params, updates), new_state, opt_state, loss

    losses = []
    for _ in range(4):  # dropout_rate traced, as AlgoPerf submissions pass it
        params, model_state, opt_state, loss = step(params, model_state, opt_state, 0.0)
        losses.append(float(loss))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]

    results = workload.eval_model(16, params, model_state, rng, data_dir, None, global_step=4)
    for prefix in ("train", "validation", "test"):
        assert 0.0 <= results[f"{prefix}/wer"] <= 2.0
        assert results[f"{prefix}/loss"] > 0.0
    assert results["validation/num_examples"] == 20 and results["test/num_examples"] == 20


def test_reduce_eval_outputs_ignores_padding_rows(workload):
    a = input_pipeline.encode
    ref1, ref2 = a("tree on"), a("sea")
    targets = np.zeros((3, 8), np.int32)
    pads = np.ones((3, 8), np.float32)
    for i, ids in enumerate([ref1, ref2]):
        targets[i, : len(ids)] = ids
        pads[i, : len(ids)] = 0
    hyp = np.zeros((3, 10), np.int32)
    hyp[0, [1, 3, 5, 7]] = a("tree")  # "tree": one deletion of two words
    hyp[1, [0, 2, 4]] = a("sea")  # exact
    hyp[2, :3] = a("odd")  # padding row: ignored
    outputs = [
        {
            "loss": np.float32(6.0),
            "num_tokens": np.float32(10.0),
            "frame_labels": hyp,
            "targets": targets,
            "target_paddings": pads,
            "weights": np.array([1.0, 1.0, 0.0], np.float32),
        }
    ]
    metrics_ = workload.reduce_eval_outputs(outputs)
    assert metrics_["wer"] == pytest.approx(1 / 3)
    assert metrics_["loss"] == pytest.approx(0.6)
