"""LibriSpeech as AlgoPerf's ``librispeech_preprocess.py`` leaves it, read without TF.

``<root>/<split>.csv`` lists utterance ids (a pandas-style index column, then ``id``);
``<root>/<split>/<id>_audio.npy`` holds the 16-bit PCM samples (the reference stores
int64, ``prepare.py`` int16 unless told otherwise; both read the same) and
``<id>_targets.npy`` the SentencePiece ids (int32, ending with EOS = 2);
``<root>/spm_model.vocab`` is the SentencePiece model (binary, despite its name).
``<root>`` is ``--data-dir`` or ``--data-dir``/librispeech (where ``algoperf data prepare
librispeech``, ``prepare.py``, writes this layout from the official archives).

Examples are right-padded: audio to 320,000 samples, targets to 256 tokens, with
paddings 1.0 on the padded positions. A batch is {'inputs': (audio [B, 320000],
audio_paddings), 'targets': (tokens [B, 256] float32, token_paddings), 'weights' [B]}.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator

import numpy as np

from algoperf.data.epochs import EpochOrder, SeekableBatches
from algoperf.spec import DataNotFoundError

MAX_AUDIO = 320_000
MAX_TOKENS = 256
SPLITS = {
    "train": ("train-clean-100", "train-clean-360", "train-other-500"),
    "eval_train": ("train-clean-100", "train-clean-360", "train-other-500"),
    "validation": ("dev-clean", "dev-other"),
    "test": ("test-clean",),
}
TOKENIZER_FILE = "spm_model.vocab"
SETUP_HINT = (
    "Download the six LibriSpeech archives (train-clean-100, train-clean-360, train-other-500, "
    "dev-clean, dev-other, test-clean .tar.gz from https://www.openslr.org/12) into one folder and run "
    "`algoperf data prepare librispeech --source FOLDER --data-dir DIR`, then pass --data-dir DIR "
    "(a folder made by AlgoPerf's `dataset_setup.py --librispeech` works too)."
)


def root(data_dir: str | None) -> str:
    """The folder holding the split csv files (``data_dir`` or ``data_dir/librispeech``)."""
    if not data_dir:
        raise DataNotFoundError(f"librispeech needs --data-dir. {SETUP_HINT}")
    for candidate in (data_dir, os.path.join(data_dir, "librispeech")):
        if os.path.exists(os.path.join(candidate, "dev-clean.csv")):
            return candidate
    raise DataNotFoundError(f"no LibriSpeech split files (dev-clean.csv, ...) under {data_dir!r}. {SETUP_HINT}")


def utterances(data_dir: str | None, split: str) -> list[str]:
    """Paths (without the ``_audio.npy`` suffix) of ``split``'s utterances, in csv order."""
    base = root(data_dir)
    out = []
    for name in SPLITS[split]:
        path = os.path.join(base, f"{name}.csv")
        if not os.path.exists(path):
            raise DataNotFoundError(f"LibriSpeech split file {path!r} is missing. {SETUP_HINT}")
        with open(path, newline="") as f:
            out += [os.path.join(base, name, row["id"]) for row in csv.DictReader(f)]
    return out


def load_example(prefix: str) -> dict[str, np.ndarray]:
    audio = np.load(prefix + "_audio.npy")
    tokens = np.load(prefix + "_targets.npy")
    if len(audio) > MAX_AUDIO or len(tokens) > MAX_TOKENS:
        raise ValueError(f"{prefix}: {len(audio)} samples / {len(tokens)} tokens exceed {MAX_AUDIO} / {MAX_TOKENS}")
    a = np.zeros(MAX_AUDIO, np.float32)
    a[: len(audio)] = audio
    a_pad = np.ones(MAX_AUDIO, np.float32)
    a_pad[: len(audio)] = 0.0
    t = np.zeros(MAX_TOKENS, np.float32)
    t[: len(tokens)] = tokens
    t_pad = np.ones(MAX_TOKENS, np.float32)
    t_pad[: len(tokens)] = 0.0
    return {"audio": a, "audio_paddings": a_pad, "tokens": t, "token_paddings": t_pad}


def _collate(examples: list[dict[str, np.ndarray]], size: int) -> dict:
    n = len(examples)
    arrays = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    weights = np.ones(n, np.float32)
    if n < size:
        # Padded rows: silence, fully padded, weight 0 (they count nowhere).
        fill = {"audio": 0.0, "audio_paddings": 1.0, "tokens": 0.0, "token_paddings": 1.0}
        arrays = {k: np.concatenate([v, np.full((size - n,) + v.shape[1:], fill[k], v.dtype)]) for k, v in arrays.items()}
        weights = np.concatenate([weights, np.zeros(size - n, np.float32)])
    return {
        "inputs": (arrays["audio"], arrays["audio_paddings"]),
        "targets": (arrays["tokens"], arrays["token_paddings"]),
        "weights": weights,
    }


def batches(
    prefixes: list[str], batch_size: int, seed: int | None, repeat: bool, drop_remainder: bool
) -> Iterator[dict]:
    """Batches of ``prefixes``' examples; shuffled every epoch when ``seed`` is given."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(prefixes)) if seed is not None else np.arange(len(prefixes))
        buf = []
        for i in order:
            buf.append(load_example(prefixes[i]))
            if len(buf) == batch_size:
                yield _collate(buf, batch_size)
                buf = []
        if buf and not drop_remainder:
            yield _collate(buf, batch_size)
        if not repeat:
            return


def load_tokenizer(data_dir: str | None):
    """SentencePiece processor of ``<root>/spm_model.vocab`` (needs ``sentencepiece``)."""
    path = os.path.join(root(data_dir), TOKENIZER_FILE)
    if not os.path.exists(path):
        raise DataNotFoundError(f"the SentencePiece model {path!r} is missing (WER needs it). {SETUP_HINT}")
    try:
        import sentencepiece
    except ImportError as e:
        raise ImportError("LibriSpeech WER detokenises with SentencePiece: `pip install sentencepiece`") from e
    return sentencepiece.SentencePieceProcessor(model_file=path)


def train_batches(prefixes: list[str], batch_size: int, seed: int) -> SeekableBatches:
    """The train stream: full batches, reshuffled every epoch, seekable (``algoperf.data.epochs``):
    a resumed trial goes on at its next batch without loading the utterances before it."""
    order = EpochOrder(len(prefixes), batch_size, seed, what=f"the {len(prefixes)} training utterances")
    return SeekableBatches(order, lambda idx, b: _collate([load_example(prefixes[i]) for i in idx], batch_size))
