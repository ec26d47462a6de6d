"""The translate workload: numbers digits <-> English words, metric BLEU (sacrebleu)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, registry, spec
from algoperf.losses import token_cross_entropy
from algoperf.workloads.translate import input_pipeline as ip
from algoperf.workloads.translate.model import greedy_decode, shift_right
from algoperf.workloads.translate.workload import (
    TranslateWorkload,
    corpus_bleu,
)
from tests.workload_checks import nadamw_losses


@pytest.fixture(scope="module")
def workload():
    w = registry.get_workload("translate")
    params, state = w.init_model_fn(jax.random.PRNGKey(0))
    return w, params, state


def test_registered_with_a_higher_is_better_target():
    assert {"translate", "translate_post_ln"} <= set(registry.workload_names())
    info = registry.workload_info("translate_post_ln")
    assert info["base_workload"] == "translate" and info["data_source"] == "generated"
    assert spec.higher_is_better("validation/bleu")


@pytest.mark.parametrize(
    "n, words",
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (40, "forty"),
        (99, "ninety nine"),
        (105, "one hundred five"),
        (110, "one hundred ten"),
        (1000, "one thousand"),
        (4521, "four thousand five hundred twenty one"),
        (70_017, "seventy thousand seventeen"),
        (110_000, "one hundred ten thousand"),
        (1_000_001, "one million one"),
        (200_300_000, "two hundred million three hundred thousand"),
        (
            999_999_999,
            "nine hundred ninety nine million nine hundred ninety nine thousand "
            "nine hundred ninety nine",
        ),
        (100_000_000_019, "one hundred billion nineteen"),
    ],
)
def test_number_names(n, words):
    assert ip.number_to_words(n) == words


def test_arrays_shapes_round_trip_and_disjoint_splits():
    numbers = {}
    for split in ("train", "validation", "test"):
        data = ip.load(split)
        x, y = data["inputs"], data["targets"]
        assert x.shape == (ip.NUM_EXAMPLES[split], ip.SRC_LEN) and x.dtype == np.int32
        assert y.shape == (ip.NUM_EXAMPLES[split], ip.TGT_LEN) and y.dtype == np.int32
        assert np.all(np.sum(y == ip.EOS, axis=1) == 1) and np.all(np.sum(x == ip.EOS, axis=1) == 1)
        values = []
        for src, tgt in zip(x[:300], y[:300], strict=True):
            tag, *rest = ip.decode(src).split()
            if tag == "<2words>":  # digits -> words
                n = int("".join(rest))
                assert ip.decode(tgt) == ip.number_to_words(n)
            else:  # words -> digits
                assert tag == "<2digits>"
                n = int(ip.decode(tgt).replace(" ", ""))
                assert " ".join(rest) == ip.number_to_words(n)
            values.append(n)
        numbers[split] = set(values)
        assert set(ip.split_of(np.array(values)).tolist()) == {
            ("train", "validation", "test").index(split)
        }
    assert (
        not numbers["train"] & numbers["validation"] and not numbers["validation"] & numbers["test"]
    )


def test_generation_is_deterministic_and_seeded():
    a, b = ip.make_split("validation"), ip.make_split("validation")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(a["inputs"], ip.load("validation")["inputs"])
    other = ip.make_split("validation", seed=ip.SEED + 1)
    assert not np.array_equal(a["inputs"], other["inputs"])
    held_out = ip.sample_numbers("test", 1000)
    assert len(np.unique(held_out)) == 1000  # drawn without replacement


def test_bleu_against_hand_computed_values():
    # Identical corpora: 100.
    assert corpus_bleu(
        ["one two three four", "five"], ["one two three four", "five"]
    ) == pytest.approx(100.0)
    # 'the cat sat on the mat' vs 'the cat is on the mat': precisions 5/6, 3/5, 1/4 and
    # 0/3, smoothed (sacrebleu 'exp') to 1/(2*3); equal lengths so no brevity penalty.
    expected = 100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25
    assert corpus_bleu(["the cat sat on the mat"], ["the cat is on the mat"]) == pytest.approx(
        expected, rel=1e-6
    )
    # A correct prefix of 4 of 6 words: every precision 1, brevity penalty exp(1 - 6/4).
    expected = 100 * math.exp(1 - 6 / 4)
    assert corpus_bleu(["the cat sat on"], ["the cat sat on the mat"]) == pytest.approx(
        expected, rel=1e-6
    )


def test_loss_counts_only_target_tokens():
    labels = jnp.array([[3, 5, ip.EOS, 0, 0], [4, ip.EOS, 0, 0, 0]])
    logits = jnp.zeros((2, 5, 8))  # uniform over 8 classes: ln 8 per token
    out = token_cross_entropy(labels, logits, ignore_padding=True)
    assert float(out["n_valid_examples"]) == 5
    assert float(out["summed"]) == pytest.approx(5 * math.log(8), rel=1e-6)
    assert out["per_example"].shape == (2, 5) and float(out["per_example"][0, 3]) == 0.0
    masked = token_cross_entropy(labels, logits, jnp.array([1.0, 0.0]), ignore_padding=True)
    assert float(masked["n_valid_examples"]) == 3
    # Label smoothing eps: target (1 - eps) onehot + eps / V; with uniform logits still ln 8.
    smooth = token_cross_entropy(labels, logits, label_smoothing=0.3, ignore_padding=True)
    assert float(smooth["summed"]) == pytest.approx(5 * math.log(8), rel=1e-6)
    peaked = jnp.zeros((1, 1, 4)).at[0, 0, 1].set(math.log(3.0))  # p = (1/6, 1/2, 1/6, 1/6)
    eps, log_p = 0.2, np.log([1 / 6, 1 / 2, 1 / 6, 1 / 6])
    got = token_cross_entropy(jnp.array([[1]]), peaked, label_smoothing=eps, ignore_padding=True)["summed"]
    assert float(got) == pytest.approx(-(1 - eps) * log_p[1] - eps / 4 * log_p.sum(), rel=1e-5)


def test_shapes_param_count_and_types(workload):
    w, params, _ = workload
    assert param_utils.num_params(params) == 169_088
    types = w.model_params_types
    assert types["shared_embedding"]["embedding"] == spec.ParameterType.EMBEDDING
    assert types["encoder_0"]["self_attention"]["query"]["kernel"] == spec.ParameterType.ATTENTION_Q
    assert (
        types["decoder_1"]["cross_attention"]["value"]["kernel"] == spec.ParameterType.ATTENTION_V
    )
    assert types["decoder_0"]["ln3"]["scale"] == spec.ParameterType.LAYER_NORM_SCALE
    assert types["encoder_norm"]["bias"] == spec.ParameterType.LAYER_NORM_BIAS
    assert types["encoder_1"]["mlp"]["dense_in"]["kernel"] == spec.ParameterType.WEIGHT
    assert w.is_output_params("shared_embedding")
    post = jax.eval_shape(
        registry.get_workload("translate_post_ln").model.init,
        jax.random.PRNGKey(0),
        jnp.ones((1, ip.SRC_LEN), jnp.int32),
        jnp.ones((1, ip.TGT_LEN), jnp.int32),
    )["params"]
    assert "encoder_norm" not in post and "decoder_norm" not in post
    big = TranslateWorkload(size=4.0).model
    assert (big.dim, big.num_encoder_layers, big.mlp_dim) == (256, 4, 512)


def test_greedy_decoding_matches_step_by_step_argmax(workload):
    w, params, _ = workload
    inputs = jnp.asarray(ip.load("validation")["inputs"][:4])
    decoded = jax.jit(functools.partial(greedy_decode, w.model, length=ip.TGT_LEN))(params, inputs)
    assert decoded.shape == (4, ip.TGT_LEN)
    forward = jax.jit(lambda p, y: w.model.apply({"params": p}, inputs, y))
    prefix = np.zeros((4, ip.TGT_LEN), np.int32)  # start symbol 0, then the tokens so far
    for t in range(ip.TGT_LEN):
        token = np.argmax(np.asarray(forward(params, jnp.asarray(prefix)))[:, t], axis=-1)
        np.testing.assert_array_equal(np.asarray(decoded)[:, t], token)
        if t + 1 < ip.TGT_LEN:
            prefix[:, t + 1] = token
    np.testing.assert_array_equal(shift_right(jnp.array([[5, 6, 1]])), [[0, 5, 6]])


def test_a_jitted_nadamw_step_lowers_the_loss(workload):
    w, params, state = workload
    split = ip.load("train")
    batch = {k: jnp.asarray(v[:32]) for k, v in split.items()}
    losses = nadamw_losses(w, params, batch, steps=9, model_state=state, dropout_rate=0.1)
    assert losses[-1] < losses[0] - 0.5


def test_eval_model_keys_and_bleu_of_perfect_outputs(workload):
    w, params, state = workload
    fresh = TranslateWorkload()
    for split in ("train", "validation", "test"):  # small splits keep the test fast
        fresh._splits[split] = {k: v[:60] for k, v in ip.load(split).items()}
    fresh.num_eval_train_examples = 60
    result = fresh.eval_model(50, params, state, jax.random.PRNGKey(0), None, None, 0)
    for split in ("train", "validation", "test"):
        assert 0.0 <= result[f"{split}/bleu"] < 5.0  # an untrained model
        assert 0.0 <= result[f"{split}/accuracy"] <= 1.0 and result[f"{split}/loss"] > 1.0
    assert result["validation/num_examples"] == 60 and result["test/num_examples"] == 60
    # The reduction: decoded ids equal to the targets give BLEU 100 and use only real rows.
    targets = ip.load("validation")["targets"][:3]
    garbage = np.full_like(targets, 12)
    outputs = [
        {
            "loss": np.float32(1.0),
            "num_tokens": np.float32(2.0),
            "correct": np.float32(1.0),
            "decoded": np.concatenate([targets, garbage[:1]]),
            "targets": np.concatenate([targets, targets[:1]]),
            "weights": np.array([1.0, 1.0, 1.0, 0.0], np.float32),
        },
    ]
    metrics = fresh.reduce_eval_outputs(outputs)
    assert metrics == {"loss": 0.5, "accuracy": 0.5, "bleu": pytest.approx(100.0)}
