"""Generated "speech": dual-tone letters spelling English words, as log-mel frames.

Each utterance is 2-4 words drawn from a fixed lexicon of real English words over a
12-letter alphabet. Each letter is sounded as a pair of sine tones (like a telephone
keypad's DTMF tones: one of 3 low and one of 4 high frequencies) for 30-70 ms with 5 ms
ramps, letters are separated by 5-25 ms of silence and words by 50-110 ms. Every
utterance has its own "speaker": all frequencies are scaled by a factor in [0.9, 1.1],
each tone's loudness varies, and white noise is added at 0-15 dB SNR. So the model
has to read letters from the tone pairs and word boundaries from the pause lengths.

Audio is 8 kHz; features are log-mel frames computed in numpy (25 ms periodic-Hann
windows every 10 ms, 256-point power spectrum, ``NUM_MEL`` triangular HTK-mel filters over
100-3800 Hz, ``log(max(mel, 1e-5))``), normalised per bin with the training split's mean
and std. A frame is valid if it lies wholly inside the utterance (AlgoPerf counts a frame
valid if any of its samples is; we avoid the half-silent last frame); invalid frames are
zero and marked 1 in 'input_paddings'.

Tokens: 0 = CTC blank, 1 = space (word boundary), 2.. = the letters. Targets are the
letter and space tokens of the transcript (no EOS), right-padded with 0 to
``MAX_TARGET_LEN``; 'target_paddings' is 1 on padded positions.
"""

from __future__ import annotations

import functools

import numpy as np

from algoperf.data import generated

SAMPLE_RATE = 8000
FRAME_LENGTH = 200  # 25 ms
HOP_LENGTH = 80  # 10 ms
FFT_SIZE = 256
NUM_MEL = 32
MEL_LOW_HZ, MEL_HIGH_HZ = 100.0, 3800.0
MAX_FRAMES = 160
MAX_SAMPLES = (MAX_FRAMES - 1) * HOP_LENGTH + FRAME_LENGTH
MAX_TARGET_LEN = 32

NUM_TRAIN = 4096
NUM_VALIDATION = 512
NUM_TEST = 512
SEED = 0
VERSION = 2  # bump when the generator changes, so old caches are not reused

ALPHABET = "adehilmnorst"
BLANK_ID, SPACE_ID = 0, 1
VOCAB_SIZE = 2 + len(ALPHABET)
LOW_TONES_HZ = (320.0, 450.0, 630.0)
HIGH_TONES_HZ = (900.0, 1200.0, 1600.0, 2150.0)

LEXICON = tuple(
    """
    and ant arm art ash ate dare dash date deal dean dear den dim dine dish do dot ear east
    eat edit elm end had hail ham hand hat he heat her hid hide him hint hit hold hole home
    hose hot idea in is it lad laid land last late lead lid line list load lot mad made mail
    main male man mast mat me meal mean meat mild mind mine mist mode mole most name near neat
    nest net no nod none nose not note odd oil old on one or red rest ride rim road rod rose
    sad said salt sand sea seat she shed side silo sit slim slot so soil sold son star stem
    stone store tail tale tame tea team tear ten the them then thin tide time tin toad told
    tone trade train tree trim
    """.split()
)

_KEYS = ("inputs", "input_paddings", "targets", "target_paddings")


def letter_tones(letter: str) -> tuple[float, float]:
    """The (low, high) tone pair in Hz that sounds ``letter``."""
    i = ALPHABET.index(letter)
    return LOW_TONES_HZ[i // len(HIGH_TONES_HZ)], HIGH_TONES_HZ[i % len(HIGH_TONES_HZ)]


def encode(text: str) -> np.ndarray:
    """Token ids of ``text`` (letters and single spaces)."""
    return np.array([SPACE_ID if c == " " else 2 + ALPHABET.index(c) for c in text], np.int32)


def decode(ids: np.ndarray) -> str:
    """Text of token ids; blanks are dropped."""
    chars = {SPACE_ID: " ", **{2 + i: c for i, c in enumerate(ALPHABET)}}
    return "".join(chars[int(i)] for i in ids if int(i) != BLANK_ID)


def _segments(words: list[str], rng: np.random.Generator) -> list[tuple[float, float, int]]:
    """(low Hz, high Hz, samples) per segment; a tone pair of (0, 0) is silence."""
    ms = SAMPLE_RATE // 1000
    segs = [(0.0, 0.0, int(rng.integers(20, 80)) * ms)]
    for w, word in enumerate(words):
        if w:
            segs.append((0.0, 0.0, int(rng.integers(50, 111)) * ms))
        for j, letter in enumerate(word):
            if j:
                segs.append((0.0, 0.0, int(rng.integers(5, 26)) * ms))
            low, high = letter_tones(letter)
            segs.append((low, high, int(rng.integers(30, 71)) * ms))
    segs.append((0.0, 0.0, int(rng.integers(20, 80)) * ms))
    return segs


def synthesize(words: list[str], rng: np.random.Generator) -> np.ndarray:
    """The waveform (float64, about unit peak) of ``words`` spoken by a random "speaker"."""
    pitch = rng.uniform(0.9, 1.1)
    ramp = 5 * SAMPLE_RATE // 1000
    parts = []
    for low, high, n in _segments(words, rng):
        if low == 0.0:
            parts.append(np.zeros(n))
            continue
        t = np.arange(n) / SAMPLE_RATE
        gains = rng.uniform(0.5, 1.0, 2)
        phases = rng.uniform(0, 2 * np.pi, 2)
        tone = gains[0] * np.sin(2 * np.pi * low * pitch * t + phases[0])
        tone += gains[1] * np.sin(2 * np.pi * high * pitch * t + phases[1])
        envelope = np.minimum(1.0, np.minimum(np.arange(n) + 1, n - np.arange(n)) / ramp)
        parts.append(0.5 * tone * envelope)
    audio = np.concatenate(parts)
    signal_power = np.mean(np.square(audio[np.abs(audio) > 0])) if np.any(audio) else 1.0
    snr_db = rng.uniform(0.0, 15.0)
    noise = rng.normal(size=audio.shape) * np.sqrt(signal_power / 10 ** (snr_db / 10))
    return audio + noise


@functools.cache
def mel_filterbank(num_mel: int = NUM_MEL) -> np.ndarray:
    """[FFT_SIZE // 2 + 1, num_mel] triangular filters on the HTK mel scale 1127 ln(1 + f/700)."""

    def mel(f: np.ndarray | float) -> np.ndarray:
        return 1127.0 * np.log1p(np.asarray(f) / 700.0)

    bins = mel(np.linspace(0, SAMPLE_RATE / 2, FFT_SIZE // 2 + 1))
    edges = np.linspace(mel(MEL_LOW_HZ), mel(MEL_HIGH_HZ), num_mel + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (bins[:, None] - lower) / (centre - lower)
    down = (upper - bins[:, None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(up, down))
    weights[0] = 0.0  # no DC
    return weights


def log_mel(audio: np.ndarray) -> np.ndarray:
    """[frames, NUM_MEL] log-mel features of ``audio`` (VALID framing, ``HOP_LENGTH`` hop)."""
    num_frames = 1 + (len(audio) - FRAME_LENGTH) // HOP_LENGTH
    idx = np.arange(FRAME_LENGTH)[None, :] + HOP_LENGTH * np.arange(num_frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME_LENGTH) / FRAME_LENGTH)
    power = np.square(np.abs(np.fft.rfft(audio[idx] * window, n=FFT_SIZE)))
    return np.log(np.maximum(power @ mel_filterbank(), 1e-5))


def make_split(num_examples: int, seed: int) -> dict[str, np.ndarray]:
    """Unnormalised features and padded targets of ``num_examples`` utterances."""
    rng = np.random.default_rng(seed)
    feats = np.zeros((num_examples, MAX_FRAMES, NUM_MEL), np.float32)
    paddings = np.ones((num_examples, MAX_FRAMES), np.float32)
    targets = np.zeros((num_examples, MAX_TARGET_LEN), np.int32)
    target_paddings = np.ones((num_examples, MAX_TARGET_LEN), np.float32)
    for i in range(num_examples):
        while True:
            words = [str(w) for w in rng.choice(LEXICON, size=rng.integers(2, 5))]
            audio = synthesize(words, rng)
            if len(audio) <= MAX_SAMPLES:
                break
        features = log_mel(audio)
        num_valid = len(features)
        feats[i, :num_valid] = features
        paddings[i, :num_valid] = 0.0
        ids = encode(" ".join(words))
        targets[i, : len(ids)] = ids
        target_paddings[i, : len(ids)] = 0.0
    return {
        "inputs": feats,
        "input_paddings": paddings,
        "targets": targets,
        "target_paddings": target_paddings,
    }


def _sub_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def generate(seed: int = SEED) -> dict[str, dict[str, np.ndarray]]:
    """All three splits, features normalised with the training split's per-bin statistics."""
    splits = {
        "train": make_split(NUM_TRAIN, _sub_seed(seed, 0)),
        "validation": make_split(NUM_VALIDATION, _sub_seed(seed, 1)),
        "test": make_split(NUM_TEST, _sub_seed(seed, 2)),
    }
    valid = splits["train"]["input_paddings"] == 0
    frames = splits["train"]["inputs"][valid]
    mean, std = frames.mean(axis=0), frames.std(axis=0)
    for arrays in splits.values():
        keep = (arrays["input_paddings"] == 0)[..., None]
        arrays["inputs"] = np.where(keep, (arrays["inputs"] - mean) / std, 0.0).astype(np.float32)
    return splits


def load(data_dir: str | None = None, seed: int = SEED) -> dict[str, dict[str, np.ndarray]]:
    """Splits 'train', 'validation', 'test', generated once and then read from the cache."""
    path = generated.cache_path(data_dir, "speech", f"v{VERSION}", seed, NUM_TRAIN, NUM_VALIDATION, NUM_TEST, MAX_FRAMES, NUM_MEL)
    flat = generated.cached_arrays(
        path, lambda: {f"{split}/{k}": v for split, arrays in generate(seed).items() for k, v in arrays.items()})
    return {
        split: {k: flat[f"{split}/{k}"] for k in _KEYS} for split in ("train", "validation", "test")
    }
