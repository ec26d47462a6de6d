"""Full-scale WMT workloads: parameter parity, loss, cached decoding, beam search, BLEU, data."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, registry, spec, tfrecord
from algoperf.workloads.wmt import decode, input_pipeline
from algoperf.workloads.wmt.model import Transformer, TransformerConfig, sinusoid_table
from algoperf.workloads.wmt.workload import WmtWorkload, corpus_bleu, token_cross_entropy

# The spec sheet's counts (workloads-text-graph.md §1.2), hand-derived there and equal to ours.
SHEET_COUNTS = {
    "wmt": 133_521_408,
    "wmt_post_ln": 133_517_312,
    "wmt_attention_temp": 133_521_408,
    "wmt_glu_tanh": 146_116_608,
}
TINY = dict(emb_dim=32, num_heads=4, qkv_dim=32, mlp_dim=32, num_layers=2, max_len=256)


@pytest.mark.parametrize("name", sorted(SHEET_COUNTS))
def test_parameter_count_matches_the_spec_sheet(name):
    w = registry.get_workload(name)
    params, _ = jax.eval_shape(lambda: w.init_model_fn(jax.random.PRNGKey(0)))
    assert param_utils.num_params(params) == SHEET_COUNTS[name]
    assert params["shared_embedding"]["embedding"].shape == (32_000, 1024)
    attention = params["encoder"]["encoderblock_0"]["MultiHeadDotProductAttention_0"]
    assert set(attention) == {"query", "key", "value", "out"}  # no biases
    assert ("encoder_layernorm" in params["encoder"]) == (name != "wmt_post_ln")
    assert w.is_output_params("shared_embedding") and (w.base_workload or name) == "wmt"


def test_sinusoid_table_halves():
    table = sinusoid_table(4, 8)[0]
    freqs = np.exp(np.arange(4) * -(math.log(10_000.0) / 3))
    np.testing.assert_allclose(table[3, :4], np.sin(3 * freqs), rtol=1e-6)
    np.testing.assert_allclose(table[3, 4:], np.cos(3 * freqs), rtol=1e-6)


def test_token_loss_counts_non_padding_tokens_and_smooths_over_vocab():
    logits = jnp.array([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    targets = jnp.array([[1, 0]])  # second token is padding
    out = token_cross_entropy(targets, logits)
    lse = math.log(math.exp(2) + 2)
    assert float(out["n_valid_examples"]) == 1 and out["per_example"].shape == (1, 2)
    assert float(out["summed"]) == pytest.approx(lse - 0.0, rel=1e-6)
    a = 0.3
    smoothed = token_cross_entropy(targets, logits, label_smoothing=a)
    expected = -((1 - a + a / 3) * (0 - lse) + a / 3 * (2 - lse) + a / 3 * (0 - lse))
    assert float(smoothed["summed"]) == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow  # ~20 s wall on 2 busy cores (jit of encoder + decode step)
def test_cached_decoding_matches_teacher_forcing():
    cfg = TransformerConfig(vocab_size=20, **TINY)
    model = Transformer(cfg)
    rng = np.random.default_rng(0)
    inputs = jnp.asarray(rng.integers(3, 20, (2, 6)))
    targets = jnp.asarray(rng.integers(3, 20, (2, 5)))
    params = model.init(jax.random.PRNGKey(0), inputs, targets)["params"]
    full = model.apply({"params": params}, inputs, targets)
    dec = Transformer(cfg, decode=True)
    encoded = dec.apply({"params": params}, inputs, method=Transformer.encode)
    cache = dec.init(jax.random.PRNGKey(0), encoded, inputs, jnp.ones((2, 5), jnp.int32), method=Transformer.decode_step)["cache"]
    shifted = np.pad(np.asarray(targets), ((0, 0), (1, 0)))[:, :-1]
    step = jax.jit(
        lambda cache, token: dec.apply(
            {"params": params, "cache": cache}, encoded, inputs, token,
            method=Transformer.decode_step, mutable=["cache"],
        )
    )
    for t in range(5):
        logits, mutated = step(cache, jnp.asarray(shifted[:, t : t + 1]))
        cache = mutated["cache"]
        np.testing.assert_allclose(logits[:, 0], full[:, t], atol=1e-4)


def test_beam_search_finds_the_best_length_penalised_sequence():
    # A fixed bigram table over 4 tokens (EOS = 2): score every sequence by brute force.
    vocab, length, alpha = 4, 5, 0.6
    table = np.log(np.random.default_rng(3).dirichlet(np.ones(vocab), size=vocab)).astype(np.float32)

    def logprob_fn(tokens, cache):
        return jnp.asarray(table)[tokens[:, 0]], cache

    seqs, score = decode.beam_search(logprob_fn, jnp.zeros(()), 1, beam_size=4, alpha=alpha, max_decode_len=length)
    best, best_score = None, -np.inf
    for n in range(1, length):  # n generated tokens, the last one EOS
        for body in itertools.product([0, 1, 3], repeat=n - 1):
            seq = (0, *body, 2)
            s = sum(table[a, b] for a, b in itertools.pairwise(seq)) / ((5 + n) / 6) ** alpha
            if s > best_score:
                best, best_score = seq[1:], s
    assert float(score[0]) == pytest.approx(best_score, rel=1e-5)
    assert tuple(np.asarray(seqs[0, : len(best)])) == best


def test_corpus_bleu_by_hand():
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    # 5/5 unigrams, 2/4 bigrams, 1/3 trigrams, 0/2 4-grams (exp smoothing: 1/(2*2)),
    # equal lengths: BLEU = 100 * (1 * 2/4 * 1/3 * 1/4) ** (1/4).
    hyp, ref = "a b c d x", "a b c x d"
    expected = 100 * (5 / 5 * 2 / 4 * 1 / 3 * (1 / (2 * 2))) ** 0.25
    assert corpus_bleu([hyp], [ref]) == pytest.approx(expected, rel=1e-6)


SENTENCES = [
    ("ein kleiner hund läuft", "a small dog runs"),
    ("die katze schläft", "the cat sleeps"),
    ("ich sehe das haus", "i see the house"),
    ("wir essen brot", "we eat bread"),
    ("das wetter ist gut", "the weather is good"),
    ("er liest ein buch", "he reads a book"),
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    sentencepiece = pytest.importorskip("sentencepiece", reason="the wmt tokenizer needs sentencepiece")
    root = tmp_path_factory.mktemp("data") / "wmt"
    root.mkdir()
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(s for pair in SENTENCES * 5 for s in pair))
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(root / "sp"), vocab_size=60, model_type="unigram",
        character_coverage=1.0, hard_vocab_limit=False, minloglevel=2,
    )
    (root / "sp.model").rename(root / input_pipeline.VOCAB_FILE)
    for dataset, split, n in (("wmt17_translate", "train", 30), ("wmt14_translate", "validation", 5), ("wmt14_translate", "test", 5)):
        folder = root / dataset / "de-en" / "1.0.0"
        folder.mkdir(parents=True, exist_ok=True)
        records = [tfrecord.make_example({"de": [de], "en": [en]}) for de, en in (SENTENCES * 5)[:n]]
        tfrecord.write_records(folder / f"{dataset}-{split}.tfrecord-00000-of-00001", records)
    return str(root.parent)


def test_missing_data_dir_is_a_clear_error(tmp_path):
    w = WmtWorkload()
    with pytest.raises(spec.DataNotFoundError, match="--data-dir"):
        next(w._build_input_queue(jax.random.PRNGKey(0), "train", None, 2))
    with pytest.raises(spec.DataNotFoundError, match="dataset_setup.py"):
        next(w._build_input_queue(jax.random.PRNGKey(0), "validation", str(tmp_path), 2))


def test_packing_positions_and_segments():
    rows = list(input_pipeline.pack([(np.array([5, 6, 2]), np.array([7, 2])), (np.array([8, 2]), np.array([9, 9, 2]))], length=6))
    assert len(rows) == 1
    np.testing.assert_array_equal(rows[0]["inputs"], [5, 6, 2, 8, 2, 0])
    np.testing.assert_array_equal(rows[0]["inputs_position"], [0, 1, 2, 0, 1, 0])
    np.testing.assert_array_equal(rows[0]["targets_segmentation"], [1, 1, 2, 2, 2, 0])


@pytest.mark.slow  # ~30 s wall on 2 busy cores (train step + beam-search eval compile)
def test_train_step_and_eval_with_beam_search(data_dir):
    tok = input_pipeline.load_tokenizer(data_dir)
    w = WmtWorkload(config_overrides=dict(vocab_size=tok.get_piece_size(), **TINY))
    w.max_decode_len = 12  # short decode: the test checks the path, not translation quality
    params, state = w.init_model_fn(jax.random.PRNGKey(0))
    batch = next(w._build_input_queue(jax.random.PRNGKey(1), "train", data_dir, 2))
    assert batch["inputs"].shape == (2, 256) and int(batch["inputs_segmentation"].max()) > 1

    def loss(p):
        logits, _ = w.model_fn(p, batch, state, spec.ForwardPassMode.TRAIN, jax.random.PRNGKey(2), True, 0.1)
        out = w.loss_fn(batch["targets"], logits, batch["weights"])
        return out["summed"] / out["n_valid_examples"]

    grad = jax.jit(jax.grad(loss))(params)
    new = jax.tree.map(lambda x, g: x - 0.05 * g, params, grad)
    eval_loss = jax.jit(lambda p: loss(p))
    assert float(eval_loss(new)) < float(eval_loss(params))
    result = w._eval_model_on_split("validation", 5, 4, params, state, None, data_dir)
    assert set(result) == {"loss", "accuracy", "bleu"} and 0.0 <= result["bleu"] <= 100.0
    # Detokenization cuts at the first EOS; without one only the first id is kept.
    ids = np.array(tok.encode("the cat sleeps") + [2, 7, 7])
    assert input_pipeline.detokenize(tok, ids) == "the cat sleeps"
    assert input_pipeline.detokenize(tok, ids[:2]) == tok.decode([int(ids[0])])
