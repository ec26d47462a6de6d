"""A small encoder-decoder Transformer in the layout of AlgoPerf's WMT model.

As in the reference WMT model (scaled down): one embedding table shared by the encoder
input, the decoder input and the output layer (logits = h E^T / sqrt(d)), fixed sinusoid
positions added without sqrt(d) input scaling, attention projections without biases, an
MLP of width ``mlp_dim`` with biases, dropout after the embeddings, after every
sublayer and inside the MLP. Sublayers are wrapped as

    pre-LN (default):  x <- x + f(LN(x)), with a final LN after the encoder and decoder
    post-LN (variant): x <- LN(x + f(x)), with no final LNs.

The decoder's input is the target shifted right by one with 0 as the start symbol; its
self-attention is causal and its cross-attention ignores padded source positions. (The
reference also masks padded *query* positions; that changes only outputs at padded
positions, which the loss ignores, so it is left out.) Greedy decoding caches the
decoder's self-attention keys/values and the cross-attention keys/values.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from algoperf.layers import dropout


def sinusoid_positions(length: int, dim: int) -> np.ndarray:
    """(length, dim) table of fixed positions p = 0..length-1, with h = dim/2:

    columns [0, h) hold sin(p w_i) and [h, 2h) cos(p w_i), w_i = 10000^(-i / (h - 1)).
    """
    half = dim // 2
    freqs = np.exp(np.arange(half) * -np.log(10000.0) / max(half - 1, 1))
    angles = np.arange(length)[:, None] * freqs[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


class Rngs:
    """Hands out fresh dropout keys from one key (or None everywhere when ``key`` is None)."""

    def __init__(self, key: jax.Array | None):
        self.key = key

    def __call__(self) -> jax.Array | None:
        if self.key is None:
            return None
        self.key, sub = jax.random.split(self.key)
        return sub


class Mlp(nn.Module):
    """Dense(mlp_dim) -> activation -> dropout -> Dense(dim)."""

    dim: int
    mlp_dim: int
    activation: Callable[[jax.Array], jax.Array]

    @nn.compact
    def __call__(self, x: jax.Array, rate: float, rngs: Rngs) -> jax.Array:
        h = self.activation(
            nn.Dense(self.mlp_dim, kernel_init=nn.initializers.xavier_uniform(), name="dense_in")(x)
        )
        h = dropout(h, rate, rngs())
        return nn.Dense(self.dim, kernel_init=nn.initializers.xavier_uniform(), name="dense_out")(h)


class Attention(nn.Module):
    """Multi-head dot-product attention without biases (the parameter layout of Flax's
    ``MultiHeadDotProductAttention``: query/key/value kernels (dim, heads, head_dim), out
    kernel (heads, head_dim, dim)), split into ``kv`` and ``attend`` so that decoding can
    cache keys and values.

    attend: softmax_k(q_i . k_k / sqrt(head_dim), masked entries -> -inf) weighted sum of v.
    """

    dim: int
    num_heads: int

    def setup(self) -> None:
        head_dim = self.dim // self.num_heads
        dense = functools.partial(
            nn.DenseGeneral, use_bias=False, kernel_init=nn.initializers.xavier_uniform()
        )
        self.query = dense((self.num_heads, head_dim))
        self.key = dense((self.num_heads, head_dim))
        self.value = dense((self.num_heads, head_dim))
        self.out = dense(self.dim, axis=(-2, -1))

    def kv(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Keys and values (B, L, heads, head_dim) of ``x``."""
        return self.key(x), self.value(x)

    def attend(
        self, x: jax.Array, keys: jax.Array, values: jax.Array, mask: jax.Array
    ) -> jax.Array:
        """Attention of queries from ``x`` (B, Lq, dim) over keys/values; mask (B, 1, Lq, Lk)."""
        q = self.query(x) / np.sqrt(keys.shape[-1]).astype(np.float32)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, keys)
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
        weights = jax.nn.softmax(logits, axis=-1)
        return self.out(jnp.einsum("bhqk,bkhd->bqhd", weights, values))

    def __call__(self, x: jax.Array, context: jax.Array, mask: jax.Array) -> jax.Array:
        return self.attend(x, *self.kv(context), mask)


class EncoderBlock(nn.Module):
    dim: int
    num_heads: int
    mlp_dim: int
    activation: Callable[[jax.Array], jax.Array]
    pre_ln: bool

    def setup(self) -> None:
        self.self_attention = Attention(self.dim, self.num_heads)
        self.mlp = Mlp(self.dim, self.mlp_dim, self.activation)
        self.ln1, self.ln2 = nn.LayerNorm(), nn.LayerNorm()

    def __call__(self, x: jax.Array, mask: jax.Array, rate: float, rngs: Rngs) -> jax.Array:
        if self.pre_ln:
            h = self.ln1(x)
            x = x + dropout(self.self_attention(h, h, mask), rate, rngs())
            return x + dropout(self.mlp(self.ln2(x), rate, rngs), rate, rngs())
        x = self.ln1(x + dropout(self.self_attention(x, x, mask), rate, rngs()))
        return self.ln2(x + dropout(self.mlp(x, rate, rngs), rate, rngs()))


class DecoderBlock(nn.Module):
    dim: int
    num_heads: int
    mlp_dim: int
    activation: Callable[[jax.Array], jax.Array]
    pre_ln: bool

    def setup(self) -> None:
        self.self_attention = Attention(self.dim, self.num_heads)
        self.cross_attention = Attention(self.dim, self.num_heads)
        self.mlp = Mlp(self.dim, self.mlp_dim, self.activation)
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(), nn.LayerNorm(), nn.LayerNorm()

    def __call__(
        self,
        y: jax.Array,
        encoded_kv: tuple[jax.Array, jax.Array],
        self_mask: jax.Array,
        cross_mask: jax.Array,
        rate: float,
        rngs: Rngs,
        cache: tuple[jax.Array, jax.Array, int] | None = None,
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
        """Returns (output, updated self-attention cache).

        Teacher forcing: ``cache`` None, ``y`` all positions. Decoding: ``y`` (B, 1, dim) is
        position t and ``cache`` = (keys, values, t) of all positions; the new position's
        key and value are written at t and attention sees positions <= t (``self_mask``).
        """
        h = self.ln1(y) if self.pre_ln else y
        keys, values = self.self_attention.kv(h)
        if cache is not None:
            cached_keys, cached_values, t = cache
            keys = jax.lax.dynamic_update_slice_in_dim(cached_keys, keys, t, axis=1)
            values = jax.lax.dynamic_update_slice_in_dim(cached_values, values, t, axis=1)
        a = dropout(self.self_attention.attend(h, keys, values, self_mask), rate, rngs())
        if self.pre_ln:
            y = y + a
            y = y + dropout(
                self.cross_attention.attend(self.ln2(y), *encoded_kv, cross_mask), rate, rngs()
            )
            y = y + dropout(self.mlp(self.ln3(y), rate, rngs), rate, rngs())
        else:
            y = self.ln1(y + a)
            y = self.ln2(
                y + dropout(self.cross_attention.attend(y, *encoded_kv, cross_mask), rate, rngs())
            )
            y = self.ln3(y + dropout(self.mlp(y, rate, rngs), rate, rngs()))
        return y, (keys, values) if cache is not None else None


class Transformer(nn.Module):
    """(B, S) source ids, (B, T) decoder-input ids -> (B, T, vocab) logits."""

    vocab_size: int
    dim: int = 64
    num_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    mlp_dim: int = 128
    max_len: int = 32
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    pre_ln: bool = True

    def setup(self) -> None:
        self.shared_embedding = nn.Embed(
            self.vocab_size, self.dim, embedding_init=nn.initializers.normal(1.0)
        )
        blocks = (self.dim, self.num_heads, self.mlp_dim, self.activation, self.pre_ln)
        self.encoder_blocks = [
            EncoderBlock(*blocks, name=f"encoder_{i}") for i in range(self.num_encoder_layers)
        ]
        self.decoder_blocks = [
            DecoderBlock(*blocks, name=f"decoder_{i}") for i in range(self.num_decoder_layers)
        ]
        if self.pre_ln:
            self.encoder_norm = nn.LayerNorm()
            self.decoder_norm = nn.LayerNorm()
        self.positions = sinusoid_positions(self.max_len, self.dim)

    def encode(
        self, inputs: jax.Array, dropout_rate: float = 0.0, rng: jax.Array | None = None
    ) -> jax.Array:
        """(B, S) ids -> (B, S, dim) encodings."""
        rngs = Rngs(rng)
        x = self.shared_embedding(inputs) + self.positions[None, : inputs.shape[1]]
        x = dropout(x, dropout_rate, rngs())
        mask = nn.make_attention_mask(inputs > 0, inputs > 0)
        for block in self.encoder_blocks:
            x = block(x, mask, dropout_rate, rngs)
        return self.encoder_norm(x) if self.pre_ln else x

    def cross_kv(self, encoded: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
        """Each decoder block's cross-attention keys and values of the encodings."""
        return [block.cross_attention.kv(encoded) for block in self.decoder_blocks]

    def _logits(self, y: jax.Array) -> jax.Array:
        if self.pre_ln:
            y = self.decoder_norm(y)
        return (self.shared_embedding.attend(y) / np.sqrt(self.dim)).astype(jnp.float32)

    def decode(
        self,
        encoded: jax.Array,
        inputs: jax.Array,
        decoder_inputs: jax.Array,
        dropout_rate: float = 0.0,
        rng: jax.Array | None = None,
    ) -> jax.Array:
        """Logits (B, T, vocab) of the next token at each position of ``decoder_inputs``."""
        rngs = Rngs(rng)
        y = self.shared_embedding(decoder_inputs) + self.positions[None, : decoder_inputs.shape[1]]
        y = dropout(y, dropout_rate, rngs())
        self_mask = nn.make_causal_mask(decoder_inputs)
        cross_mask = nn.make_attention_mask(jnp.ones_like(decoder_inputs, bool), inputs > 0)
        for block, kv in zip(self.decoder_blocks, self.cross_kv(encoded), strict=True):
            y, _ = block(y, kv, self_mask, cross_mask, dropout_rate, rngs)
        return self._logits(y)

    def decode_step(
        self,
        cross_kv: list[tuple[jax.Array, jax.Array]],
        inputs: jax.Array,
        cache: list[tuple[jax.Array, jax.Array]],
        tokens: jax.Array,
        t: jax.Array,
    ) -> tuple[jax.Array, list[tuple[jax.Array, jax.Array]]]:
        """Decoder at position t only: (B,) input tokens -> (B, vocab) logits, new cache.

        ``cache`` holds each block's self-attention keys/values (B, T, heads, head_dim) of
        positions < t; the result equals position t of ``decode`` on the whole prefix.
        """
        y = self.shared_embedding(tokens[:, None]) + jax.lax.dynamic_slice_in_dim(
            jnp.asarray(self.positions), t, 1
        )
        self_mask = (jnp.arange(cache[0][0].shape[1]) <= t)[None, None, None, :]
        cross_mask = (inputs > 0)[:, None, None, :]
        new_cache = []
        for block, kv, (keys, values) in zip(self.decoder_blocks, cross_kv, cache, strict=True):
            y, updated = block(
                y, kv, self_mask, cross_mask, 0.0, Rngs(None), cache=(keys, values, t)
            )
            new_cache.append(updated)
        return self._logits(y)[:, 0], new_cache

    def __call__(
        self,
        inputs: jax.Array,
        decoder_inputs: jax.Array,
        dropout_rate: float = 0.0,
        rng: jax.Array | None = None,
    ) -> jax.Array:
        enc_rng, dec_rng = (None, None) if rng is None else tuple(jax.random.split(rng))
        encoded = self.encode(inputs, dropout_rate, enc_rng)
        return self.decode(encoded, inputs, decoder_inputs, dropout_rate, dec_rng)


def shift_right(targets: jax.Array) -> jax.Array:
    """Decoder inputs: 0 (the start symbol) followed by targets[:, :-1]."""
    return jnp.pad(targets, ((0, 0), (1, 0)))[:, :-1]


def greedy_decode(model: Transformer, params: dict, inputs: jax.Array, length: int) -> jax.Array:
    """(B, length) greedy output ids, jittable (a ``lax.scan`` over positions, KV-cached).

    y_0 = 0 (start); for t = 0..length-1: y_{t+1} = argmax_v logits(x, y_0..y_t)[t, v].
    The encoder runs once, cross-attention keys/values are computed once, and each step
    runs the decoder on one position against cached self-attention keys/values. Outputs
    keep going after EOS; callers cut at the first EOS.
    """
    variables = {"params": params}
    encoded = model.apply(variables, inputs, method=Transformer.encode)
    cross_kv = model.apply(variables, encoded, method=Transformer.cross_kv)
    head_dim = model.dim // model.num_heads
    zeros = jnp.zeros((inputs.shape[0], length, model.num_heads, head_dim), encoded.dtype)
    cache = [(zeros, zeros) for _ in range(model.num_decoder_layers)]

    def step(carry: tuple, t: jax.Array) -> tuple[tuple, jax.Array]:
        tokens, cache = carry
        logits, cache = model.apply(
            variables, cross_kv, inputs, cache, tokens, t, method=Transformer.decode_step
        )
        tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return (tokens, cache), tokens

    start = jnp.zeros((inputs.shape[0],), jnp.int32)
    _, outputs = jax.lax.scan(step, (start, cache), jnp.arange(length))
    return outputs.T
