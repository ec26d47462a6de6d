"""CTC loss, greedy CTC decoding and word error rate."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .input_pipeline import BLANK_ID, decode


def ctc_loss(
    logits: jax.Array, logit_paddings: jax.Array, labels: jax.Array, label_paddings: jax.Array
) -> jax.Array:
    """Per-utterance CTC negative log-likelihood [B] (blank id 0), not divided by length."""
    log_probs = jax.nn.log_softmax(logits)
    return optax.ctc_loss(
        log_probs, logit_paddings, labels.astype(jnp.int32), label_paddings, blank_id=BLANK_ID
    )


def greedy_frame_labels(logits: jax.Array, logit_paddings: jax.Array) -> jax.Array:
    """Jittable greedy CTC decoding, before compaction: [B, T] ids with 0 where dropped.

    Take the argmax per frame; keep a frame's label only if it differs from the previous
    frame's (so a blank between them separates repeats) and the frame is not padding.
    Blanks are 0 already; ``compact`` removes the zeros.
    """
    ids = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    previous = jnp.pad(ids[:, :-1], ((0, 0), (1, 0)), constant_values=BLANK_ID)
    keep = (ids != previous) & (logit_paddings == 0)
    return jnp.where(keep, ids, BLANK_ID)


def compact(frame_labels: np.ndarray) -> list[np.ndarray]:
    """Per row, the non-blank ids of ``greedy_frame_labels`` in order."""
    return [row[row != BLANK_ID] for row in np.asarray(frame_labels)]


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance between word sequences (substitution, insertion, deletion cost 1).

    d[i][j] = min(d[i-1][j] + 1, d[i][j-1] + 1, d[i-1][j-1] + [ref_i != hyp_j]), one row at a time.
    """
    row = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        diagonal, row[0] = row[0], i
        for j, hyp_word in enumerate(hypothesis, start=1):
            diagonal, row[j] = (
                row[j],
                min(row[j] + 1, row[j - 1] + 1, diagonal + (ref_word != hyp_word)),
            )
    return row[-1]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edit distance, number of reference words); an empty reference counts as 1 word."""
    ref_words, hyp_words = reference.split(), hypothesis.split()
    return edit_distance(ref_words, hyp_words), max(len(ref_words), 1)


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Sum of word errors over the sum of reference word counts."""
    errors = words = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        e, n = word_errors(ref, hyp)
        errors += e
        words += n
    return errors / max(words, 1)


def ids_to_text(ids: np.ndarray, paddings: np.ndarray | None = None) -> str:
    """Text of a token-id row, skipping padded positions and blanks."""
    ids = np.asarray(ids)
    if paddings is not None:
        ids = ids[np.asarray(paddings) == 0]
    return decode(ids)
