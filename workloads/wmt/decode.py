"""Beam search with a KV cache, as AlgoPerf's WMT eval decodes (beam 4, alpha 0.6).

Length penalty ``BP(l) = ((5 + l) / 6) ** alpha``. Sequences hold a leading dummy 0 and
``max_decode_len - 1`` generated tokens. At each step every live beam's next-token
log-probs are added to its score; the best ``2k`` candidates over beam x vocab are kept;
the new live beams are the best ``k`` of those that did not just emit EOS, and candidates
that did emit EOS, scored ``logprob / BP(step + 1)``, are merged with the finished set
(best ``k`` of ``3k``). The search stops at the length limit or once, for every row, all
``k`` finished slots are filled and the worst finished score beats the best live score
divided by ``BP(max_decode_len)``. Rows with nothing finished fall back to live beams.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

NEG_INF = -1.0e7
EOS_ID = 2


def brevity_penalty(alpha: float, length: jax.Array | int) -> jax.Array:
    return jnp.power((5.0 + jnp.asarray(length, jnp.float32)) / 6.0, alpha)


def _gather_beams(tree: Any, index: jax.Array, batch: int, beams_in: int) -> Any:
    """Select beams ``index`` [B, k'] from every [B * beams_in, ...] or [B, beams_in, ...]
    leaf (scalar leaves, e.g. cache indices, are shared and kept)."""

    def gather(x: jax.Array) -> jax.Array:
        if x.ndim == 0:
            return x
        if x.shape[0] == batch * beams_in:
            y = x.reshape((batch, beams_in) + x.shape[1:])
            y = jnp.take_along_axis(y, index.reshape(index.shape + (1,) * (y.ndim - 2)), axis=1)
            return y.reshape((-1,) + x.shape[1:])
        return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)

    return jax.tree.map(gather, tree)


def beam_search(
    logprob_fn: Callable[[jax.Array, Any], tuple[jax.Array, Any]],
    cache: Any,
    batch_size: int,
    beam_size: int = 4,
    alpha: float = 0.6,
    max_decode_len: int = 256,
    eos_id: int = EOS_ID,
) -> tuple[jax.Array, jax.Array]:
    """Best sequences [B, max_decode_len - 1] (dummy 0 dropped) and their scores [B].

    ``logprob_fn(tokens [B*k, 1], cache) -> (log-probs [B*k, V], cache)``; ``cache`` is
    laid out with the beam folded into the batch (row ``b * k + j``).
    """
    k, length = beam_size, max_decode_len
    max_penalty = brevity_penalty(alpha, length)
    state = dict(
        index=jnp.array(0),
        live_seqs=jnp.zeros((batch_size, k, length), jnp.int32),
        live_logprobs=jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1)), (batch_size, 1)),
        finished_seqs=jnp.zeros((batch_size, k, length), jnp.int32),
        finished_scores=jnp.full((batch_size, k), NEG_INF),
        finished_flags=jnp.zeros((batch_size, k), bool),
        cache=cache,
    )

    def not_done(s: dict) -> jax.Array:
        best_live = s["live_logprobs"][:, 0] / max_penalty  # live beams are kept best-first
        worst_finished = jnp.min(jnp.where(s["finished_flags"], s["finished_scores"], NEG_INF), 1)
        settled = jnp.all(worst_finished > best_live)
        return (s["index"] < length - 1) & ~settled

    def step(s: dict) -> dict:
        i = s["index"]
        tokens = jax.lax.dynamic_slice_in_dim(s["live_seqs"], i, 1, axis=2).reshape(-1, 1)
        logprobs, cache = logprob_fn(tokens, s["cache"])
        vocab = logprobs.shape[-1]
        scores = s["live_logprobs"][:, :, None] + logprobs.reshape(batch_size, k, vocab)
        top_scores, top_flat = jax.lax.top_k(scores.reshape(batch_size, k * vocab), 2 * k)
        top_beam, top_token = top_flat // vocab, top_flat % vocab
        top_seqs = _gather_beams(s["live_seqs"], top_beam, batch_size, k)
        top_seqs = jax.lax.dynamic_update_slice_in_dim(top_seqs, top_token[:, :, None], i + 1, 2)
        is_eos = top_token == eos_id
        # Live: best k of the 2k that did not just end.
        live_scores, live_idx = jax.lax.top_k(jnp.where(is_eos, NEG_INF, top_scores), k)
        live_seqs = jnp.take_along_axis(top_seqs, live_idx[:, :, None], axis=1)
        cache = _gather_beams(cache, jnp.take_along_axis(top_beam, live_idx, 1), batch_size, k)
        # Finished: merge the candidates that ended here with the finished set.
        new_scores = jnp.where(is_eos, top_scores / brevity_penalty(alpha, i + 1), NEG_INF)
        all_seqs = jnp.concatenate([s["finished_seqs"], top_seqs], axis=1)
        all_scores = jnp.concatenate([s["finished_scores"], new_scores], axis=1)
        all_flags = jnp.concatenate([s["finished_flags"], is_eos], axis=1)
        fin_scores, fin_idx = jax.lax.top_k(jnp.where(all_flags, all_scores, NEG_INF), k)
        return dict(
            index=i + 1,
            live_seqs=live_seqs,
            live_logprobs=live_scores,
            finished_seqs=jnp.take_along_axis(all_seqs, fin_idx[:, :, None], axis=1),
            finished_scores=fin_scores,
            finished_flags=jnp.take_along_axis(all_flags, fin_idx, axis=1),
            cache=cache,
        )

    s = jax.lax.while_loop(not_done, step, state)
    any_finished = jnp.any(s["finished_flags"], axis=1)
    seqs = jnp.where(any_finished[:, None, None], s["finished_seqs"], s["live_seqs"])
    scores = jnp.where(any_finished[:, None], s["finished_scores"], s["live_logprobs"])
    return seqs[:, 0, 1:], scores[:, 0]
