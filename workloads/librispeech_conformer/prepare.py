"""``algoperf data prepare librispeech``: the official LibriSpeech archives into AlgoPerf's layout.

Reads the six openslr.org archives ``train-clean-100``, ``train-clean-360``,
``train-other-500``, ``dev-clean``, ``dev-other`` and ``test-clean`` (``.tar.gz`` of
``LibriSpeech/<split>/<speaker>/<chapter>/`` with ``.flac`` audio and ``.trans.txt``
transcripts) from a local folder, or downloads them. Writes ``<data_dir>/librispeech``:
the ``<split>.csv`` lists, ``<split>/<id>_audio.npy`` / ``<id>_targets.npy`` and
``spm_model.vocab`` that AlgoPerf's ``librispeech_preprocess.py`` leaves (the layout is
in ``input_pipeline``'s docstring).
"""

from __future__ import annotations

import csv
import io
import sys
import tarfile
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from algoperf.spec import DataNotFoundError

from .input_pipeline import MAX_AUDIO, MAX_TOKENS, SETUP_HINT, TOKENIZER_FILE

ARCHIVES = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other", "test-clean")
TOKENIZER_SPLIT = "train-clean-100"  # the reference trains the vocabulary on these transcripts only
TOKENIZER_MAX_CHARS = 10_000_000
MAX_TRANSCRIPT_CHARS = 256
SAMPLE_RATE = 16_000
DOWNLOAD_URL = "https://www.openslr.org/resources/12/"
AUDIO_DTYPES = {"int16": np.int16, "int64": np.int64}
OPTIONS = ("vocab_size", "audio_dtype")


def prepare(data_dir: str | Path, source: str | Path | None = None, **options: str) -> Path:
    """Write ``<data_dir>/librispeech`` (``input_pipeline``'s layout) from the official archives.

    ``source``: a folder holding ``<split>.tar.gz`` for the six splits of ``ARCHIVES``
    (an archive extracted there, ``LibriSpeech/<split>/...``, is read as well); None
    downloads the archives from openslr.org into ``<data_dir>/librispeech_archives``
    (about 60 GB). Options: ``vocab_size`` (default 1024) and ``audio_dtype`` (int16, the
    default, or int64 as the reference stores it: 4x the disk, the same values).

    As the reference: a SentencePiece unigram vocabulary (character coverage 1.0) is trained
    on the first 10^7 characters of train-clean-100's transcripts; an utterance is dropped
    when its transcript has more than 256 characters or its audio more than 320,000
    samples. We also drop one with more than 256 tokens, which no reader can pad (the
    reference's would fail on it). Flac is decoded by libsndfile (``soundfile``).
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown librispeech option(s) {unknown}; known: {', '.join(OPTIONS)}")
    try:
        vocab_size = int(options.get("vocab_size", 1024))
    except ValueError:
        raise ValueError(f"vocab_size must be an integer, not {options['vocab_size']!r}") from None
    dtype_name = str(options.get("audio_dtype", "int16"))
    if dtype_name not in AUDIO_DTYPES:
        raise ValueError(f"audio_dtype must be one of {', '.join(AUDIO_DTYPES)}, not {dtype_name!r}")
    out = Path(data_dir) / "librispeech"
    folder = _download(Path(data_dir) / "librispeech_archives") if source is None else Path(source)
    sources = _split_sources(folder)  # every split checked before hours of decoding start
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = None
    for split in ARCHIVES:  # train-clean-100 first: its transcripts train the tokenizer
        transcripts, lengths = _decode_split(sources[split], split, out / split, AUDIO_DTYPES[dtype_name])
        if tokenizer is None:
            tokenizer = _train_tokenizer(transcripts, vocab_size, out / TOKENIZER_FILE)
        _finish_split(split, out, transcripts, lengths, tokenizer)
    return out


def _download(folder: Path) -> Path:
    """The six archives in ``folder``, fetched from ``DOWNLOAD_URL`` where missing."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in ARCHIVES:
        target = folder / f"{split}.tar.gz"
        if target.exists():
            continue
        part = folder / f"{split}.tar.gz.part"
        print(f"librispeech: downloading {DOWNLOAD_URL}{target.name}", file=sys.stderr, flush=True)
        try:
            urllib.request.urlretrieve(DOWNLOAD_URL + target.name, part)
        except OSError as e:  # URLError included
            raise DataNotFoundError(f"downloading {DOWNLOAD_URL}{target.name} failed ({e}). {SETUP_HINT}") from e
        part.replace(target)
    return folder


def _split_sources(folder: Path) -> dict[str, Path]:
    """Each split's archive, or its extracted folder, in ``folder``."""
    if not folder.is_dir():
        raise DataNotFoundError(f"--source {str(folder)!r} is not a folder. {SETUP_HINT}")
    found, missing = {}, []
    for split in ARCHIVES:
        candidates = (folder / f"{split}.tar.gz", folder / "LibriSpeech" / split, folder / split)
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            missing.append(f"{split}.tar.gz")
        found[split] = path
    if missing:
        raise DataNotFoundError(f"{folder} lacks {', '.join(missing)}. {SETUP_HINT}")
    return found


def _split_files(path: Path, split: str) -> Iterator[tuple[str, bytes]]:
    """(name, contents) of the ``.flac`` and ``.trans.txt`` files of one split: streamed
    from its ``.tar.gz`` (never extracted to disk), or read from its extracted folder."""
    wanted = (".flac", ".trans.txt")
    if path.is_dir():
        for file in sorted(path.rglob("*")):
            if file.name.endswith(wanted):
                yield str(file), file.read_bytes()
        return
    count = 0
    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                if not (member.isfile() and member.name.endswith(wanted)):
                    continue  # README.TXT, SPEAKERS.TXT, ... and folders
                if split not in PurePosixPath(member.name).parts:
                    raise ValueError(f"{path} holds {member.name}, not LibriSpeech/{split}/...: is it the {split} archive?")
                count += 1
                yield f"{path}:{member.name}", tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise ValueError(f"{path} is not a readable .tar.gz ({e}); download it again") from e
    if count == 0:
        raise ValueError(f"{path} holds no LibriSpeech/{split} .flac files: is it the {split} archive?")


def _decode_flac(data: bytes, name: str) -> np.ndarray:
    """16-bit samples of a 16 kHz mono flac file."""
    import soundfile  # only preparing needs libsndfile

    try:
        audio, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    except RuntimeError as e:  # soundfile.LibsndfileError
        raise ValueError(f"{name} is not a readable flac file ({e}); download its archive again") from e
    if rate != SAMPLE_RATE or audio.ndim != 1:
        raise ValueError(f"{name}: {rate} Hz with shape {audio.shape}; LibriSpeech is 16 kHz mono")
    return audio


def _decode_split(path: Path, split: str, split_dir: Path, dtype: type) -> tuple[dict[str, str], dict[str, int]]:
    """Save every flac of a split of at most 320,000 samples as ``<id>_audio.npy`` and read
    the transcripts. Returns (transcript by id, number of samples by id)."""
    split_dir.mkdir(parents=True, exist_ok=True)
    transcripts, lengths = {}, {}
    for name, data in _split_files(path, split):
        if name.endswith(".trans.txt"):
            for line in data.decode("utf-8").splitlines():
                utt, _, text = line.strip().partition(" ")  # "<id> <TRANSCRIPT>"
                if utt:
                    transcripts[utt] = text
            continue
        audio = _decode_flac(data, name)
        utt = PurePosixPath(name).name[: -len(".flac")]
        lengths[utt] = len(audio)
        if len(audio) <= MAX_AUDIO:
            np.save(split_dir / f"{utt}_audio.npy", audio.astype(dtype))
    return transcripts, lengths


def _train_tokenizer(transcripts: dict[str, str], vocab_size: int, path: Path):
    """SentencePiece unigram model (character coverage 1.0; unk 0, bos 1, eos 2) trained on
    the transcripts in id order, one a line, while their characters (newlines counted) stay
    within 10^7; written to ``path``, returned as a processor."""
    import sentencepiece

    lines, chars = [], 0
    for utt in sorted(transcripts):
        chars += len(transcripts[utt]) + 1
        if chars > TOKENIZER_MAX_CHARS:
            break
        lines.append(transcripts[utt])
    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size,
            character_coverage=1.0, model_type="unigram", minloglevel=1,
        )
    except RuntimeError as e:
        raise ValueError(
            f"training a {vocab_size}-piece SentencePiece vocabulary on {len(lines)} {TOKENIZER_SPLIT} "
            f"transcripts failed: {e}"
        ) from e
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(model.getvalue())
    tmp.replace(path)
    return sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())


def _finish_split(split: str, out: Path, transcripts: dict[str, str], lengths: dict[str, int], tokenizer) -> None:
    """Write the kept utterances' ``<id>_targets.npy`` (ids + EOS) and ``<split>.csv``;
    delete the audio of dropped ones."""
    kept: list[str] = []
    dropped = {"transcript > 256 characters": 0, "audio > 320,000 samples": 0, "tokens > 256": 0,
               "flac without transcript or transcript without flac": 0}
    for utt in sorted(set(transcripts) | set(lengths)):
        text = transcripts.get(utt)
        if text is None or utt not in lengths:
            reason = "flac without transcript or transcript without flac"
        elif len(text) > MAX_TRANSCRIPT_CHARS:
            reason = "transcript > 256 characters"
        elif lengths[utt] > MAX_AUDIO:
            reason = "audio > 320,000 samples"
        else:
            tokens = np.asarray(tokenizer.encode(text, add_eos=True), np.int32)
            if len(tokens) <= MAX_TOKENS:
                np.save(out / split / f"{utt}_targets.npy", tokens)
                kept.append(utt)
                continue
            reason = "tokens > 256"
        dropped[reason] += 1
        (out / split / f"{utt}_audio.npy").unlink(missing_ok=True)
    tmp = out / f"{split}.csv.tmp"
    with open(tmp, "w", newline="") as f:  # pandas' to_csv layout: unnamed index column, then id
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["", "id"])
        writer.writerows(enumerate(kept))
    tmp.replace(out / f"{split}.csv")
    why = ", ".join(f"{n} {reason}" for reason, n in dropped.items() if n)
    print(f"librispeech {split}: {len(kept)} utterances kept" + (f"; dropped {why}" if why else ""),
          file=sys.stderr, flush=True)
