"""Digits <-> English words: a generated translation task with real (English) grammar.

A number is written either in digits, one token per digit ('4521' -> ``4 5 2 1``), or
as its American-English name, one token per word ('four thousand five hundred twenty
one'; no "and", no hyphens); a leading tag token in the source says which way to
translate. Numbers run from 0 to ``10**MAX_DIGITS - 1``; to cover short and long numbers
alike, each example first draws its digit count uniformly from 1..MAX_DIGITS, then a
number of that length uniformly.

Splits are disjoint by construction: a fixed integer hash of the number puts 1/20 of all
numbers in validation, 1/20 in test and the rest in training, and each split draws only
from its own numbers (training with replacement, validation and test without, so the
held-out splits have few 1- and 2-digit numbers: there are few to hold out, and the
examples a length cannot supply are drawn from the next longer length). Even-numbered
examples go digits -> words (source ``<2words> 4 5 2 1``), odd-numbered ones words ->
digits (source ``<2digits> four thousand ...``, target ``4 5 2 1``): the reverse
direction needs the place-value structure (e.g. 'seventy thousand seventeen' -> 70017).
Everything comes from ``numpy.random.default_rng([SEED, split index])``, so the arrays are
the same on every run; generating them takes well under a second, so nothing is cached.

Vocabulary (shared by source and target, as in AlgoPerf's WMT): 0 = padding (also the
decoder's start symbol), 1 = end of sentence, 2..11 = the digits, then the 32 words
(zero..nineteen, twenty..ninety, hundred, thousand, million, billion) and the 2 tags.
Sequences end with EOS and are zero-padded to SRC_LEN / TGT_LEN.
"""

from __future__ import annotations

import functools

import numpy as np

MAX_DIGITS = 9
NUM_EXAMPLES = {"train": 50_000, "validation": 1_000, "test": 1_000}
SEED = 20_240_607
SPLIT_BUCKETS = 20  # hash % 20: 0 -> validation, 1 -> test, else train
PAD, EOS = 0, 1

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
SCALES = ("thousand", "million", "billion")
DIGITS = tuple("0123456789")
WORDS = (*ONES, *TENS, "hundred", *SCALES)
TAGS = ("<2words>", "<2digits>")
VOCAB = ("<pad>", "</s>", *DIGITS, *WORDS, *TAGS)
TOKEN_ID = {tok: i for i, tok in enumerate(VOCAB)}
VOCAB_SIZE = len(VOCAB)


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(TENS[n // 10 - 2])
        n %= 10
        if n:
            words.append(ONES[n])
    elif n or not words:
        words.append(ONES[n])
    return words


def number_to_words(n: int) -> str:
    """American-English name of 0 <= n < 10**12.

    E.g. 4521 -> 'four thousand five hundred twenty one', 70017 -> 'seventy thousand seventeen'.
    """
    if not 0 <= n < 10**12:
        raise ValueError(f"number out of range: {n}")
    if n == 0:
        return "zero"
    words: list[str] = []
    for power, scale in ((9, "billion"), (6, "million"), (3, "thousand")):
        group = (n // 10**power) % 1000
        if group:
            words += _below_thousand(group) + [scale]
    if n % 1000:
        words += _below_thousand(n % 1000)
    return " ".join(words)


MAX_WORDS = max(len(number_to_words(int("7" * k)).split()) for k in range(1, MAX_DIGITS + 1))
SRC_LEN = MAX_WORDS + 2  # direction tag + words + EOS
TGT_LEN = MAX_WORDS + 1


def split_of(numbers: np.ndarray) -> np.ndarray:
    """0 = train, 1 = validation, 2 = test, from a fixed multiplicative hash of each number."""
    h = (numbers.astype(np.uint64) * np.uint64(2654435761) + np.uint64(SEED)) % np.uint64(2**32)
    bucket = (h >> np.uint64(8)) % np.uint64(SPLIT_BUCKETS)
    return np.where(bucket == 0, 1, np.where(bucket == 1, 2, 0))


def sample_numbers(split: str, count: int, seed: int = SEED) -> np.ndarray:
    """``count`` numbers of ``split``: digit count uniform in 1..MAX_DIGITS, then uniform."""
    split_id = {"train": 0, "validation": 1, "test": 2}[split]
    rng = np.random.default_rng([seed, split_id])
    lengths = rng.integers(1, MAX_DIGITS + 1, size=count)
    out: list[np.ndarray] = []
    deficit = 0  # held-out examples a short length could not supply pass to the next length
    for k in range(1, MAX_DIGITS + 1):
        need = int(np.sum(lengths == k)) + deficit
        low, high = (0 if k == 1 else 10 ** (k - 1)), 10**k
        if high - low <= 100_000:
            pool = np.arange(low, high)
        else:
            pool = np.unique(rng.integers(low, high, size=40 * need + 1000))
        pool = pool[split_of(pool) == split_id]
        if split_id == 0:
            out.append(rng.choice(pool, size=need, replace=True))
        else:
            out.append(rng.choice(pool, size=min(need, len(pool)), replace=False))
            deficit = need - len(out[-1])
    numbers = np.concatenate(out)
    return numbers[rng.permutation(len(numbers))]


def encode(tokens: list[str], length: int) -> np.ndarray:
    """Token ids of ``tokens`` + EOS, zero-padded to ``length``."""
    ids = [TOKEN_ID[t] for t in tokens] + [EOS]
    if len(ids) > length:
        raise ValueError(f"{len(ids)} tokens do not fit in {length}")
    return np.array(ids + [PAD] * (length - len(ids)), np.int32)


def decode(ids: np.ndarray) -> str:
    """Detokenize one id row: cut at the first EOS (exclusive), drop padding, join with spaces."""
    words = []
    for i in np.asarray(ids).tolist():
        if i == EOS:
            break
        if i != PAD:
            words.append(VOCAB[i])
    return " ".join(words)


def make_split(split: str, count: int | None = None, seed: int = SEED) -> dict[str, np.ndarray]:
    """{'inputs': (N, SRC_LEN), 'targets': (N, TGT_LEN)} int32 token ids of ``split``."""
    numbers = sample_numbers(split, NUM_EXAMPLES[split] if count is None else count, seed)
    inputs, targets = [], []
    for i, n in enumerate(numbers.tolist()):
        digits, words = list(str(n)), number_to_words(n).split()
        if i % 2 == 0:
            inputs.append(encode(["<2words>", *digits], SRC_LEN))
            targets.append(encode(words, TGT_LEN))
        else:
            inputs.append(encode(["<2digits>", *words], SRC_LEN))
            targets.append(encode(digits, TGT_LEN))
    return {"inputs": np.stack(inputs), "targets": np.stack(targets)}


@functools.cache
def _load_cached(split: str) -> dict[str, np.ndarray]:
    arrays = make_split(split)
    for arr in arrays.values():
        arr.setflags(write=False)
    return arrays


def load(split: str) -> dict[str, np.ndarray]:
    """The fixed arrays of 'train', 'validation' or 'test' (see the module docstring)."""
    return _load_cached(split)
