"""CTC loss, greedy CTC decoding and corpus WER for the LibriSpeech workloads."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

BLANK_ID = 0  # SentencePiece <unk>


def ctc_loss(logits: jax.Array, logit_paddings: jax.Array, labels: jax.Array, label_paddings: jax.Array) -> jax.Array:
    """[B] negative log-likelihood per utterance (not divided by its length); blank id 0."""
    return optax.ctc_loss(
        jax.nn.log_softmax(logits), logit_paddings, labels.astype(jnp.int32), label_paddings, blank_id=BLANK_ID
    )


def greedy_decode(logits: np.ndarray, logit_paddings: np.ndarray) -> list[list[int]]:
    """Per utterance: argmax per frame, drop repeats (a blank separates them), drop blanks,
    keep only valid frames (the first ``sum(1 - padding)``)."""
    best = np.argmax(np.asarray(logits), axis=-1)
    lengths = np.sum(1 - np.asarray(logit_paddings), axis=-1).astype(int)
    out = []
    for seq, n in zip(best, lengths, strict=True):
        prev = np.concatenate([[-1], seq[:-1]])
        keep = (seq != prev) & (seq != BLANK_ID)
        keep[n:] = False
        out.append([int(t) for t in seq[keep]])
    return out


def word_errors(hypothesis: Sequence[str], reference: Sequence[str]) -> int:
    """Word-level Levenshtein distance (substitution, insertion, deletion cost 1)."""
    prev = list(range(len(reference) + 1))
    for i, h in enumerate(hypothesis, 1):
        cur = [i] + [0] * len(reference)
        for j, r in enumerate(reference, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (h != r))
        prev = cur
    return prev[-1]


def corpus_wer(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[int, int]:
    """(sum of word errors, sum of reference word counts); an empty reference counts 1 word."""
    errors = words = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        ref_words = ref.split()  # split() also collapses whitespace
        errors += word_errors(hyp.split(), ref_words)
        words += max(len(ref_words), 1)
    return errors, words


def batch_word_errors(
    logits: np.ndarray,
    logit_paddings: np.ndarray,
    targets: np.ndarray,
    target_paddings: np.ndarray,
    weights: np.ndarray,
    detokenize: Callable[[list[int]], str],
) -> tuple[int, int]:
    """(word errors, reference words) over the real (weight > 0) utterances of a batch."""
    hyps = greedy_decode(logits, logit_paddings)
    hyp_text, ref_text = [], []
    for k, (w, tok, pad) in enumerate(zip(weights, targets, target_paddings, strict=True)):
        if w <= 0:
            continue
        hyp_text.append(detokenize(hyps[k]))
        ref_text.append(detokenize([int(t) for t in np.asarray(tok)[np.asarray(pad) == 0]]))
    return corpus_wer(hyp_text, ref_text)
