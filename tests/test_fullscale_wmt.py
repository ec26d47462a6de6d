"""Full-scale WMT workloads: parameter parity, loss, cached decoding, beam search, BLEU, data."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, registry, spec
from algoperf.data import tfds_writer, tfrecord
from algoperf.losses import token_cross_entropy
from algoperf.workloads.wmt import decode, input_pipeline, prepare
from algoperf.workloads.wmt.model import Transformer, TransformerConfig, sinusoid_table
from algoperf.workloads.wmt.workload import WmtWorkload, corpus_bleu

# The spec sheet's counts (workloads-text-graph.md §1.2), hand-derived there and equal to ours.
SHEET_COUNTS = {
    "wmt": 133_521_408,
    "wmt_post_ln": 133_517_312,
    "wmt_attention_temp": 133_521_408,
    "wmt_glu_tanh": 146_116_608,
}
TINY = dict(emb_dim=32, num_heads=4, qkv_dim=32, mlp_dim=32, num_layers=2, max_len=256)


def data_parallel_case() -> tuple[spec.Workload, dict[str, np.ndarray]]:
    """A tiny Transformer and 16 packed training rows of 32 tokens (segments and positions)."""
    rng = np.random.default_rng(0)
    pairs = [(np.append(rng.integers(3, 40, rng.integers(2, 9)), 2), np.append(rng.integers(3, 40, rng.integers(2, 9)), 2))
             for _ in range(160)]
    rows = list(input_pipeline.pack_group(pairs, length=32))[:16]
    batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    batch["weights"] = (batch["targets"] > 0).astype(np.float32)
    return WmtWorkload(config_overrides=dict(vocab_size=40, **TINY)), batch


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
    out = token_cross_entropy(targets, logits, ignore_padding=True)
    lse = math.log(math.exp(2) + 2)
    assert float(out["n_valid_examples"]) == 1 and out["per_example"].shape == (1, 2)
    assert float(out["summed"]) == pytest.approx(lse - 0.0, rel=1e-6)
    a = 0.3
    smoothed = token_cross_entropy(targets, logits, label_smoothing=a, ignore_padding=True)
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


# A learnable parallel corpus: 5 subjects x 3 verbs x 4 objects = 60 real German/English pairs.
SUBJECTS = [("der hund", "the dog"), ("die katze", "the cat"), ("das kind", "the child"),
            ("ein mann", "a man"), ("eine frau", "a woman")]
VERBS = [("sieht", "sees"), ("mag", "likes"), ("hört", "hears")]
OBJECTS = [("das haus", "the house"), ("den ball", "the ball"), ("einen baum", "a tree"), ("das auto", "the car")]
PAIRS = [(f"{s} {v} {o}", f"{se} {ve} {oe}") for s, se in SUBJECTS for v, ve in VERBS for o, oe in OBJECTS]
# TFDS subset -> (pairs as the official files hold them, line by line), in wmt17's order.
CORPORA = {
    "europarl_v7": PAIRS[:14] + [("", ""), ("nur deutsch", "")] + PAIRS[14:18],
    "commoncrawl": PAIRS[18:30],
    "newscommentary_v12": PAIRS[30:40],
    "rapid_2016": PAIRS[40:52],
}
NEWSTEST2013 = PAIRS[52:58]
NEWSTEST2014 = [PAIRS[58], (PAIRS[59][0], PAIRS[59][1] + " &amp; more")]  # SGML text is kept raw
VOCAB = 40  # SentencePiece finds at most 48 pieces in this small corpus


def _text(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def _sgm(lines: list[str], setid: str) -> bytes:
    segs = "".join(f'<seg id="{i + 1}">{line}</seg>\n' for i, line in enumerate(lines))
    return f'<srcset setid="{setid}" srclang="any">\n<doc docid="1" genre="news">\n<p>\n{segs}</p>\n</doc>\n</srcset>\n'.encode()


def _tgz(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_wmt_sources(folder) -> None:
    """The statmt.org files in their official forms: europarl and dev as the downloaded
    archives, the other corpora as extracted files in subfolders."""
    folder.mkdir(parents=True)
    de = {k: _text([p[0] for p in v]) for k, v in CORPORA.items()}
    en = {k: _text([p[1] for p in v]) for k, v in CORPORA.items()}
    _tgz(folder / "training-parallel-europarl-v7.tgz", {
        "training/europarl-v7.de-en.de": de["europarl_v7"], "training/europarl-v7.de-en.en": en["europarl_v7"],
        "training/europarl-v7.fr-en.fr": b"ignored\n",
    })
    for sub, name, key in (("cc", "commoncrawl.de-en", "commoncrawl"),
                           ("nc/training", "news-commentary-v12.de-en", "newscommentary_v12"),
                           ("rapid", "rapid2016.de-en", "rapid_2016")):
        (folder / sub).mkdir(parents=True)
        (folder / sub / f"{name}.de").write_bytes(de[key])
        (folder / sub / f"{name}.en").write_bytes(en[key])
    _tgz(folder / "dev.tgz", {
        "dev/newstest2013.de": _text([p[0] for p in NEWSTEST2013]),
        "dev/newstest2013.en": _text([p[1] for p in NEWSTEST2013]),
        "dev/newstest2014-deen-src.de.sgm": _sgm([p[0] for p in NEWSTEST2014], "newstest2014"),
        "dev/newstest2014-deen-ref.en.sgm": _sgm([p[1] for p in NEWSTEST2014], "newstest2014"),
    })


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """``algoperf data prepare wmt`` (the CLI, in a subprocess) from the official files."""
    root = tmp_path_factory.mktemp("wmt")
    write_wmt_sources(root / "statmt")
    proc = subprocess.run(
        [sys.executable, "-m", "algoperf.cli", "data", "prepare", "wmt", "--source", str(root / "statmt"),
         "--data-dir", str(root / "data"), "--option", f"vocab_size={VOCAB}"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(root / "data")


def _tfds_order(split: str, keyed: list[tuple[str, tuple[str, str]]]) -> list[tuple[str, str]]:
    """TFDS's stored order: ascending md5(split name + key) as a 128-bit integer."""
    return [pair for _, pair in sorted(keyed, key=lambda kp: int(hashlib.md5((split + kp[0]).encode()).hexdigest(), 16))]


def _stored(data_dir: str, split: str) -> list[tuple[str, str]]:
    return [(e["de"][0].decode(), e["en"][0].decode()) for e in tfrecord.read_examples(input_pipeline.split_files(data_dir, split))]


def test_prepare_writes_the_tfds_layout_in_tfds_order(data_dir):
    root = Path(data_dir) / "wmt"
    assert sorted(p.name for p in (root / "wmt17_translate" / "de-en" / "1.0.0").iterdir()) == [
        "wmt17_translate-train.tfrecord-00000-of-00001"]
    # Keys "<subset>/0/<line>", line counted before pairs with an empty side are dropped.
    keyed = [(f"{subset}/0/{i}", pair) for subset, pairs in CORPORA.items() for i, pair in enumerate(pairs) if all(pair)]
    assert len(keyed) == 52
    assert _stored(data_dir, "train") == _tfds_order("train", keyed)
    assert _stored(data_dir, "validation") == _tfds_order("validation", [(f"newstest2013/0/{i}", p) for i, p in enumerate(NEWSTEST2013)])
    assert _stored(data_dir, "test") == _tfds_order("test", [(f"newstest2014/0/{i}", p) for i, p in enumerate(NEWSTEST2014)])
    # The tokenizer was trained (vocab_size option): EOS 2, round trip of a training sentence.
    tok = input_pipeline.load_tokenizer(data_dir)
    assert tok.get_piece_size() == VOCAB and tok.eos_id() == 2 and tok.unk_id() == 0
    assert tok.decode(tok.encode("die katze mag den ball")) == "die katze mag den ball"


def test_tfds_shard_count_and_order(tmp_path, monkeypatch):
    # TFDS's rule, by hand: WMT17 train (~1.3 GB, 5.9M pairs) -> S // 64 MiB = 20, S // 1 GiB = 1: 16 shards.
    assert tfds_writer.num_shards(1_300_000_000, 5_906_184) == 16
    assert tfds_writer.num_shards(60 << 20, 1000) == 1  # under 64 MiB: one file
    assert tfds_writer.num_shards(300 << 20, 3) == 2  # at most one shard per record: 4 -> 2
    # Shrink the 64 MiB minimum to force 4 shards of 10 records: contiguous slices of the md5 order.
    monkeypatch.setattr(tfds_writer, "MIN_SHARD_BYTES", 40)
    records = [(f"k{i}", f"record {i}".encode()) for i in range(10)]  # 8 bytes + 16 overhead each: S = 240
    files = tfds_writer.write_split(tmp_path, "demo", "train", records)
    assert [f.name for f in files] == [f"demo-train.tfrecord-0000{i}-of-00004" for i in range(4)]
    order = sorted(records, key=lambda kr: int(hashlib.md5(("train" + kr[0]).encode()).hexdigest(), 16))
    shards = [list(tfrecord.iter_records(f)) for f in files]
    assert [len(s) for s in shards] == [2, 3, 3, 2]  # bounds round(10 i / 4) = 0, 2 (2.5), 5, 8 (7.5), 10
    assert [r for shard in shards for r in shard] == [r for _, r in order]
    with pytest.raises(ValueError, match="share a key"):
        tfds_writer.write_split(tmp_path, "demo", "test", [("a", b"1"), ("a", b"2")])


def test_prepare_names_missing_and_misaligned_files(tmp_path):
    write_wmt_sources(tmp_path / "src")
    for path in (tmp_path / "src" / "rapid").iterdir():
        path.unlink()
    with pytest.raises(spec.DataNotFoundError, match="rapid2016.tgz"):
        prepare.prepare(tmp_path / "out", tmp_path / "src")
    (tmp_path / "src" / "rapid" / "rapid2016.de-en.de").write_bytes(_text(["a", "b", "c"]))
    (tmp_path / "src" / "rapid" / "rapid2016.de-en.en").write_bytes(_text(["a", "b"]))
    with pytest.raises(ValueError, match="do not align"):
        prepare.prepare(tmp_path / "out", tmp_path / "src")
    with pytest.raises(spec.DataNotFoundError, match="--source"):
        prepare.prepare(tmp_path / "out")


def test_missing_data_dir_is_a_clear_error(tmp_path):
    w = WmtWorkload()
    with pytest.raises(spec.DataNotFoundError, match="--data-dir"):
        next(w._build_input_queue(jax.random.PRNGKey(0), "train", None, 2))
    with pytest.raises(spec.DataNotFoundError, match="algoperf data prepare wmt"):
        next(w._build_input_queue(jax.random.PRNGKey(0), "validation", str(tmp_path), 2))


def test_packing_positions_and_segments():
    rows = list(input_pipeline.pack_group([(np.array([5, 6, 2]), np.array([7, 2])), (np.array([8, 2]), np.array([9, 9, 2]))], length=6))
    assert len(rows) == 1
    np.testing.assert_array_equal(rows[0]["inputs"], [5, 6, 2, 8, 2, 0])
    np.testing.assert_array_equal(rows[0]["inputs_position"], [0, 1, 2, 0, 1, 0])
    np.testing.assert_array_equal(rows[0]["targets_segmentation"], [1, 1, 2, 2, 2, 0])


def test_a_resumed_train_stream_continues_from_its_position(data_dir):
    """Resume (issue #24): a stream restored to the position() it had after batch k gives
    batches k+1, ... of the uninterrupted one, inside a pack group, at its end and in later
    epochs; each epoch packs every kept pair once."""
    tok = input_pipeline.load_tokenizer(data_dir)
    files = input_pipeline.split_files(data_dir, "train")

    def stream():
        return input_pipeline.TrainBatches(files, tok, 2, seed=9)

    whole, positions, expected = stream(), [], []
    for _ in range(12):
        positions.append(whole.position())
        expected.append(next(whole))
    assert len({p["epoch"] for p in positions}) > 1 and any(p["rows_taken"] for p in positions)
    for k in (0, 1, 5, 11):
        resumed = stream()
        resumed.restore(json.loads(json.dumps(positions[k])))  # as the checkpoint keeps it
        for j in range(k, 12):
            batch = next(resumed)
            for key in expected[j]:
                np.testing.assert_array_equal(batch[key], expected[j][key], err_msg=f"batch {j} after restore({k})")

    one_row = input_pipeline.TrainBatches(files, tok, 1, seed=9)
    packed = []  # the source sentences of epoch 0's rows, unpacked by segment
    while (row := next(one_row)) and one_row.position()["epoch"] == 0:
        inputs, segments = row["inputs"][0], row["inputs_segmentation"][0]
        packed += [tuple(inputs[segments == k]) for k in range(1, segments.max() + 1)]
    kept = [tuple(src) for src, _ in input_pipeline.pairs(data_dir, "train", tok)]
    assert sorted(packed) == sorted(kept)


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
    result = w._eval_model_on_split("validation", len(NEWSTEST2013), 4, params, state, None, data_dir)
    assert set(result) == {"loss", "accuracy", "bleu"} and 0.0 <= result["bleu"] <= 100.0
    # Detokenization cuts at the first EOS; without one only the first id is kept.
    ids = np.array(tok.encode("the cat sees a tree") + [2, 7, 7])
    assert input_pipeline.detokenize(tok, ids) == "the cat sees a tree"
    assert input_pipeline.detokenize(tok, ids[:2]) == tok.decode([int(ids[0])])
