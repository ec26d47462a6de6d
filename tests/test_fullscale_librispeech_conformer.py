"""librispeech_conformer and variants: parameter counts, frontend, SpecAugment, CTC
normalisation, greedy decoding, WER, the npy data layout, `algoperf data prepare librispeech`
from LibriSpeech-layout .tar.gz archives of flac files, and a small Conformer's train step and
evaluation on the prepared files."""

from __future__ import annotations

import functools
import math
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sentencepiece
import soundfile

from algoperf import param_utils, spec
from algoperf.workloads.librispeech_conformer import (
    WORKLOADS,
    frontend,
    input_pipeline,
    metrics,
    prepare,
)

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


def test_a_resumed_train_stream_seeks_without_loading_the_skipped_utterances(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    _write_split(tmp_path, "train", [f"u-{k}" for k in range(5)], rng)
    prefixes = sorted(str(p).removesuffix("_audio.npy") for p in (tmp_path / "train").glob("*_audio.npy"))
    uninterrupted = input_pipeline.train_batches(prefixes, 2, seed=3)
    batches = [next(uninterrupted) for _ in range(5)]  # 2 per epoch: batches 2-4 are epochs 1 and 2
    loaded = []
    original = input_pipeline.load_example
    monkeypatch.setattr(input_pipeline, "load_example", lambda prefix: loaded.append(prefix) or original(prefix))
    resumed = input_pipeline.train_batches(prefixes, 2, seed=3)
    resumed.seek(3)
    for expected in batches[3:]:
        got = next(resumed)
        np.testing.assert_array_equal(got["inputs"][0], expected["inputs"][0])
    assert len(loaded) == 4  # two batches of two: nothing before batch 3 was read
    epoch = [p for b in batches[:2] for p in b["inputs"][0][:, 0]]
    assert len(set(epoch)) == 4  # an epoch draws each utterance at most once



# --- `algoperf data prepare librispeech` from archives in the official layout -----------

LONG_TRANSCRIPT = " ".join(["HELLO"] * 43)  # 257 characters: dropped
# split -> (speaker, chapter) -> transcripts; utterance ids are <speaker>-<chapter>-<index:04d>.
CORPUS = {
    "train-clean-100": {("19", "198"): ["HELLO WORLD", "THE CAT SAT ON THE MAT"],
                        ("26", "495"): ["A LONG TIME AGO", "IT WAS THE BEST OF TIMES"]},
    "train-clean-360": {("100", "121669"): ["THE DOG RAN HOME", "HELLO THE CAT"]},
    "train-other-500": {("20", "205"): ["SHE SAT ON THE MAT", "TIME WAS LONG"]},
    "dev-clean": {("84", "121123"): ["HELLO THERE WORLD", "THE BEST CAT"]},
    # 2nd: 320,001 samples (dropped); 3rd: 320,000 samples (kept); 4th: too long a transcript.
    "dev-other": {("116", "288045"): ["A DOG", "THE LONG DOG", "A CAT", LONG_TRANSCRIPT]},
    "test-clean": {("1089", "134686"): ["QUIET CAT", "HELLO"]},  # no Q in train-clean-100
}
SPECIAL_LENGTHS = {"116-288045-0001": 320_001, "116-288045-0002": 320_000}
DROPPED = {"116-288045-0001", "116-288045-0003"}
VOCAB = 28  # what SentencePiece can fit on the four train-clean-100 transcripts


def formant_audio(n: int, seed: int) -> np.ndarray:
    """n int16 samples: three harmonics of a gliding pitch under a smooth envelope."""
    t = np.arange(n) / 16_000
    f0 = 110 + 20 * seed + 30 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16_000
    wave = sum(np.sin(k * phase) / k for k in (1, 2, 3))
    envelope = np.sin(np.pi * np.arange(n) / n) ** 2
    return (6_000 * wave * envelope).astype(np.int16)


def write_librispeech_archives(folder: Path) -> dict[str, tuple[str, str, np.ndarray]]:
    """The six archives of CORPUS as ``<split>.tar.gz``, laid out as openslr's:
    ``LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` plus
    ``<speaker>-<chapter>.trans.txt``, and the top-level .TXT files. Returns
    {id: (split, transcript, samples)}."""
    utterances = {}
    for k, (split, chapters) in enumerate(CORPUS.items()):
        stage = folder / "stage" / split
        (stage / "LibriSpeech").mkdir(parents=True)
        (stage / "LibriSpeech" / "SPEAKERS.TXT").write_text("; ID | SEX | SUBSET | MINUTES | NAME\n")
        for (speaker, chapter), texts in chapters.items():
            chapter_dir = stage / "LibriSpeech" / split / speaker / chapter
            chapter_dir.mkdir(parents=True)
            lines = []
            for i, text in enumerate(texts):
                utt = f"{speaker}-{chapter}-{i:04d}"
                audio = formant_audio(SPECIAL_LENGTHS.get(utt, 16_000 + 1_600 * (i + k)), seed=i + k)
                soundfile.write(chapter_dir / f"{utt}.flac", audio, 16_000, format="FLAC", subtype="PCM_16")
                lines.append(f"{utt} {text}\n")
                utterances[utt] = (split, text, audio)
            (chapter_dir / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))
        with tarfile.open(folder / f"{split}.tar.gz", "w:gz") as tar:
            tar.add(stage / "LibriSpeech", arcname="LibriSpeech")
    shutil.rmtree(folder / "stage")
    return utterances


def prepare_with_cli(source: Path, data_dir: Path, *options: str) -> subprocess.CompletedProcess:
    args = [a for o in options for a in ("--option", o)]
    return subprocess.run(
        [sys.executable, "-m", "algoperf.cli", "data", "prepare", "librispeech", "--source", str(source),
         "--data-dir", str(data_dir), *args], capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(data dir prepared through the CLI, archive folder, utterances)."""
    source = tmp_path_factory.mktemp("librispeech_archives")
    utterances = write_librispeech_archives(source)
    data_dir = tmp_path_factory.mktemp("librispeech_data")
    proc = prepare_with_cli(source, data_dir, f"vocab_size={VOCAB}")
    assert proc.returncode == 0, proc.stderr
    assert "dev-other: 2 utterances kept; dropped 1 transcript > 256 characters, 1 audio > 320,000" in proc.stderr
    return data_dir, source, utterances


def test_prepare_writes_the_reference_layout(prepared):
    data_dir, _, utterances = prepared
    root = data_dir / "librispeech"
    tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(root / "spm_model.vocab"))
    assert tokenizer.get_piece_size() == VOCAB
    assert (tokenizer.unk_id(), tokenizer.bos_id(), tokenizer.eos_id()) == (0, 1, 2)
    for split, chapters in CORPUS.items():
        lines = (root / f"{split}.csv").read_bytes().decode().split("\n")[:-1]  # pandas: \n endings
        expected = sorted(f"{s}-{c}-{i:04d}" for (s, c), texts in chapters.items() for i in range(len(texts)))
        expected = [u for u in expected if u not in DROPPED]
        assert lines == [",id"] + [f"{i},{u}" for i, u in enumerate(expected)]
    for utt, (split, text, audio) in utterances.items():
        prefix = root / split / utt
        if utt in DROPPED:
            assert not Path(f"{prefix}_audio.npy").exists() and not Path(f"{prefix}_targets.npy").exists()
            continue
        stored = np.load(f"{prefix}_audio.npy")
        assert stored.dtype == np.int16 and np.array_equal(stored, audio)  # flac is lossless
        targets = np.load(f"{prefix}_targets.npy")
        assert targets.dtype == np.int32 and targets[-1] == 2 and 2 not in targets[:-1]
        if "Q" in text:  # the vocabulary saw train-clean-100 only: Q is unknown there
            assert 0 in targets
        else:
            assert 0 not in targets and tokenizer.decode(targets.tolist()) == text
    assert len(np.load(root / "dev-other" / "116-288045-0002_audio.npy")) == 320_000  # the limit is kept
    # The reader takes the prepared folder: validation = dev-clean + dev-other, test = test-clean.
    assert [Path(p).name for p in input_pipeline.utterances(str(data_dir), "validation")] == [
        "84-121123-0000", "84-121123-0001", "116-288045-0000", "116-288045-0002"]
    assert len(input_pipeline.utterances(str(data_dir), "train")) == 8
    assert len(input_pipeline.utterances(str(data_dir), "test")) == 2


def test_prepare_names_bad_sources(prepared, tmp_path):
    _, source, _ = prepared
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(source / "train-clean-100.tar.gz", partial)
    with pytest.raises(spec.DataNotFoundError, match="lacks train-clean-360.tar.gz, train-other-500.tar.gz"):
        prepare.prepare(tmp_path / "out", partial)
    with pytest.raises(spec.DataNotFoundError, match="is not a folder"):
        prepare.prepare(tmp_path / "out", source / "dev-clean.tar.gz")
    wrong = tmp_path / "wrong"
    shutil.copytree(source, wrong)
    shutil.copy(source / "dev-clean.tar.gz", wrong / "train-clean-100.tar.gz")
    with pytest.raises(ValueError, match="is it the train-clean-100 archive"):
        prepare.prepare(tmp_path / "out", wrong)
    (wrong / "train-clean-100.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ValueError, match="train-clean-100.tar.gz is not a readable .tar.gz"):
        prepare.prepare(tmp_path / "out", wrong)
    with pytest.raises(ValueError, match="unknown librispeech option"):
        prepare.prepare(tmp_path / "out", source, vocab=8)
    shutil.copy(source / "train-clean-100.tar.gz", wrong)
    with pytest.raises(ValueError, match="SentencePiece"):
        prepare.prepare(tmp_path / "out", wrong, vocab_size="500")


def test_prepare_downloads_when_no_source(prepared, tmp_path, monkeypatch):
    """Without --source the archives are fetched from DOWNLOAD_URL (here a file:// folder)."""
    data_dir, source, _ = prepared
    monkeypatch.setattr(prepare, "DOWNLOAD_URL", (tmp_path / "nowhere").as_uri() + "/")
    with pytest.raises(spec.DataNotFoundError, match="--source"):
        prepare.prepare(tmp_path / "out", None)
    monkeypatch.setattr(prepare, "DOWNLOAD_URL", source.as_uri() + "/")
    root = prepare.prepare(tmp_path / "out", None, vocab_size=str(VOCAB), audio_dtype="int64")
    assert (tmp_path / "out" / "librispeech_archives" / "test-clean.tar.gz").exists()
    for split in CORPUS:
        assert (root / f"{split}.csv").read_text() == (data_dir / "librispeech" / f"{split}.csv").read_text()
    audio = np.load(root / "dev-clean" / "84-121123-0000_audio.npy")
    assert audio.dtype == np.int64
    assert np.array_equal(audio, np.load(data_dir / "librispeech" / "dev-clean" / "84-121123-0000_audio.npy"))
    # The same transcripts give the same vocabulary (SentencePiece training is deterministic).
    assert (root / "spm_model.vocab").read_bytes() == (data_dir / "librispeech" / "spm_model.vocab").read_bytes()


def test_prepare_reads_extracted_archives(prepared, tmp_path):
    """A source folder holding the archives extracted (``LibriSpeech/<split>/...``) gives the
    same files as the archives."""
    data_dir, source, _ = prepared
    for split in CORPUS:
        with tarfile.open(source / f"{split}.tar.gz") as tar:
            tar.extractall(tmp_path / "extracted", filter="data")
    root = prepare.prepare(tmp_path / "out", tmp_path / "extracted", vocab_size=str(VOCAB))
    reference = data_dir / "librispeech"
    for split in CORPUS:
        assert (root / f"{split}.csv").read_text() == (reference / f"{split}.csv").read_text()
    for path in reference.glob("*/*_targets.npy"):
        assert np.array_equal(np.load(path), np.load(root / path.parent.name / path.name))


def test_wer_with_the_prepared_tokenizer(prepared):
    """Greedy decoding + detokenising + WER on a case counted by hand: "HELLO WORLD" heard
    for "HELLO THERE WORLD" is 1 deletion in 3 words; a weight-0 row counts nowhere."""
    data_dir, _, _ = prepared
    detok = WORKLOADS["librispeech_conformer"]().detokenize(str(data_dir))
    tokenizer = sentencepiece.SentencePieceProcessor(
        model_file=str(data_dir / "librispeech" / "spm_model.vocab"))
    hyp = tokenizer.encode("HELLO WORLD")
    frames = [f for t in hyp for f in (t, t, 0)] + [5, 6]  # each token twice then a blank; 2 padded frames
    logits = np.stack([np.eye(VOCAB)[frames]] * 2)
    logit_pad = np.zeros(logits.shape[:2])
    logit_pad[:, -2:] = 1.0
    ref = tokenizer.encode("HELLO THERE WORLD", add_eos=True)
    targets = np.zeros((2, 16))
    targets[:, : len(ref)] = ref
    target_pad = (np.arange(16)[None] >= len(ref)).astype(float).repeat(2, 0)
    assert metrics.batch_word_errors(logits, logit_pad, targets, target_pad, np.array([1.0, 0.0]), detok) == (1, 3)


# --- a small Conformer on the prepared files -----------------------------------------------

SMALL_CONFORMER = {"dim": 16, "num_heads": 2, "num_blocks": 1, "ffn_hidden": 32, "subsampling_channels": 4}


def small_workload(cls: type, model: dict) -> spec.Workload:
    """``cls`` with a small model and the prepared corpus's split sizes."""
    small = type(f"Small{cls.__name__}", (cls,), {
        "num_eval_train_examples": 4, "num_validation_examples": 4, "num_test_examples": 2})
    return small(model_overrides={**model, "vocab_size": VOCAB})


def _sgd_step(workload, params, model_state, batch, rng):
    def loss(params):
        logits, new_state = workload.model_fn(
            params, batch, model_state, spec.ForwardPassMode.TRAIN, rng, update_batch_norm=True, dropout_rate=0.0)
        terms = workload.loss_fn(batch["targets"], logits)
        return terms["summed"] / terms["n_valid_examples"], new_state

    (value, new_state), grads = jax.value_and_grad(loss, has_aux=True)(params)
    return jax.tree.map(lambda p, g: p - 0.02 * g, params, grads), new_state, value


def train_and_evaluate(workload: spec.Workload, data_dir: Path) -> None:
    """Two SGD steps on one prepared train batch lower its loss and move the batch-norm
    averages; evaluation (eval batch 3: padded rows of weight 0) gives finite CTC and WER,
    and WER exactly 1 (every word deleted) for an output layer that always says blank."""
    params, state = workload.init_model_fn(jax.random.key(0))
    batch = next(workload._build_input_queue(jax.random.key(0), "train", str(data_dir), 4))
    assert batch["inputs"][0].shape == (4, 320_000) and "weights" not in batch
    step = jax.jit(functools.partial(_sgd_step, workload))
    params1, state1, before = step(params, state, batch, jax.random.key(1))
    _, _, after = step(params1, state1, batch, jax.random.key(1))  # same SpecAugment masks
    assert np.isfinite(float(before)) and float(after) < float(before)
    for old, new in zip(jax.tree.leaves(state), jax.tree.leaves(state1), strict=True):
        assert not np.allclose(old, new)
    results = workload.eval_model(3, params1, state1, jax.random.key(2), str(data_dir), None, 1)
    assert results["validation/num_examples"] == 4 and results["test/num_examples"] == 2
    for prefix in ("train", "validation", "test"):
        # Every utterance has frames enough for its tokens: no alignment-free CTC (~1e5 / token).
        assert 0 < results[f"{prefix}/ctc_loss"] < 1_000
        assert np.isfinite(results[f"{prefix}/wer"]) and results[f"{prefix}/wer"] >= 0
    out = {k: np.asarray(v) for k, v in params1[workload.output_layer].items()}
    silent = {**params1, workload.output_layer: {"kernel": np.zeros_like(out["kernel"]),
                                                 "bias": np.eye(VOCAB, dtype=np.float32)[0] * 10}}
    results = workload.eval_model(3, silent, state1, jax.random.key(2), str(data_dir), None, 1)
    assert [results[f"{p}/wer"] for p in ("train", "validation", "test")] == [1.0, 1.0, 1.0]


@pytest.mark.slow
def test_small_conformer_trains_and_evaluates_on_prepared_files(prepared):
    """Slow only from compiling (tens of seconds on a busy core)."""
    train_and_evaluate(small_workload(WORKLOADS["librispeech_conformer"], SMALL_CONFORMER), prepared[0])


# --- data parallel ---------------------------------------------------------------------------

def speech_batch(vocab: int, batch: int = 16, samples: int = 4_800) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random audio of 3,200-4,800 samples and 1-3 tokens per utterance, right-padded."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(3_200, samples + 1, batch)
    audio_pad = (np.arange(samples)[None] >= lengths[:, None]).astype(np.float32)
    audio = (rng.normal(size=(batch, samples)) * 2_000).astype(np.float32) * (1 - audio_pad)
    token_pad = (np.arange(8)[None] >= rng.integers(1, 4, batch)[:, None]).astype(np.float32)
    tokens = rng.integers(1, vocab, (batch, 8)).astype(np.float32) * (1 - token_pad)
    return {"inputs": (audio, audio_pad), "targets": (tokens, token_pad)}


def data_parallel_case() -> tuple[spec.Workload, dict]:
    workload = WORKLOADS["librispeech_conformer"](model_overrides={**SMALL_CONFORMER, "vocab_size": 16})
    return workload, speech_batch(16)
