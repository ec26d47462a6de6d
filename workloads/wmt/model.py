"""AlgoPerf's WMT encoder-decoder Transformer in Flax (linen), with a KV cache for decoding.

Architecture (AlgoPerf v0.6 JAX, ``TransformerConfig`` defaults): shared 32k embedding
(N(0, 1), no sqrt(d) input scaling), fixed sinusoid positions, 6 + 6 blocks of d = 1024,
16 heads of 64 with no attention biases, MLP width 1024 (biases N(0, 1e-6)), LayerNorm
eps 1e-6, pre-LN with final LayerNorms (post-LN variant: ``x = LN(x + f(x))`` and no final
LayerNorms). The query input of every attention is multiplied by ``attention_temp`` (so
logits are ``temp * q.k / sqrt(64)``). Logits are ``y E^T / sqrt(1024)`` with the shared
embedding E. Dropout (call-time rate) on the embeddings, every sublayer output and the
MLP hidden layer; none on the attention probabilities (JAX HEAD; see README.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from algoperf.layers import dropout


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int = 32_000
    emb_dim: int = 1024
    num_heads: int = 16
    num_layers: int = 6
    qkv_dim: int = 1024
    mlp_dim: int = 1024
    max_len: int = 256
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    glu: bool = False
    pre_ln: bool = True
    attention_temp: float = 1.0


_dense_init = dict(
    kernel_init=nn.initializers.xavier_uniform(), bias_init=nn.initializers.normal(stddev=1e-6)
)



def sinusoid_table(max_len: int, dim: int) -> np.ndarray:
    """[1, max_len, dim]: columns ``[sin(p f_i) | cos(p f_i)]``, ``f_i = exp(-i ln(1e4)/(h-1))``,
    ``h = dim / 2`` (halves concatenated, not interleaved)."""
    half = dim // 2
    freqs = np.exp(np.arange(half) * -(np.log(10_000.0) / (half - 1)))
    angles = np.arange(max_len)[:, None] * freqs[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)[None].astype(np.float32)


def shift_right(x: jax.Array) -> jax.Array:
    """Prepend 0 and drop the last token (across packed segments, as the reference does)."""
    return jnp.pad(x, ((0, 0), (1, 0)))[:, :-1]


class AddPositionEmbs(nn.Module):
    """Adds the fixed sinusoid table; in decode mode the position is a cached counter."""

    config: TransformerConfig
    decode: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        table = jnp.asarray(sinusoid_table(self.config.max_len, x.shape[-1]))
        if self.decode:
            index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
            if self.is_initializing():
                return x + table[:, : x.shape[1]]
            i = index.value
            index.value = i + 1
            return x + jax.lax.dynamic_slice(table, (0, i, 0), (1, 1, x.shape[-1]))
        if positions is None:
            return x + table[:, : x.shape[1]]
        return x + table[0][positions]


class MlpBlock(nn.Module):
    """Dense -> act [-> * Dense gate] -> Dropout -> Dense -> Dropout."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, x: jax.Array, rate: float | jax.Array, train: bool) -> jax.Array:
        c = self.config
        h = c.activation(nn.Dense(c.mlp_dim, **_dense_init)(x))
        if c.glu:
            h = h * nn.Dense(c.mlp_dim, **_dense_init)(x)  # linear gate
        h = dropout(h, rate, self.make_rng("dropout") if train else None)
        return dropout(nn.Dense(x.shape[-1], **_dense_init)(h), rate, self.make_rng("dropout") if train else None)


def _attention(c: TransformerConfig, decode: bool = False) -> nn.MultiHeadDotProductAttention:
    # No attention-probability dropout (JAX HEAD); masked logits filled with finfo.min.
    return nn.MultiHeadDotProductAttention(
        num_heads=c.num_heads,
        qkv_features=c.qkv_dim,
        use_bias=False,
        kernel_init=nn.initializers.xavier_uniform(),
        broadcast_dropout=False,
        dropout_rate=0.0,
        deterministic=True,
        decode=decode,
    )


def _layer_norm() -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=1e-6)


class Encoder1DBlock(nn.Module):
    config: TransformerConfig

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None, rate: float | jax.Array, train: bool):
        c = self.config
        ln0, ln1 = _layer_norm(), _layer_norm()
        h = ln0(x) if c.pre_ln else x
        h = _attention(c)(h * c.attention_temp, h, mask=mask)
        x = x + dropout(h, rate, self.make_rng("dropout") if train else None)
        x = x if c.pre_ln else ln0(x)
        h = ln1(x) if c.pre_ln else x
        x = x + MlpBlock(c)(h, rate, train)
        return x if c.pre_ln else ln1(x)


class EncoderDecoder1DBlock(nn.Module):
    config: TransformerConfig
    decode: bool = False

    @nn.compact
    def __call__(
        self,
        y: jax.Array,
        encoded: jax.Array,
        self_mask: jax.Array | None,
        cross_mask: jax.Array | None,
        rate: float | jax.Array,
        train: bool,
    ) -> jax.Array:
        c = self.config
        ln0, ln1, ln2 = _layer_norm(), _layer_norm(), _layer_norm()
        h = ln0(y) if c.pre_ln else y
        h = _attention(c, self.decode)(h * c.attention_temp, h, mask=self_mask)
        y = y + dropout(h, rate, self.make_rng("dropout") if train else None)
        y = y if c.pre_ln else ln0(y)
        h = ln1(y) if c.pre_ln else y
        h = _attention(c)(h * c.attention_temp, encoded, mask=cross_mask)
        y = y + dropout(h, rate, self.make_rng("dropout") if train else None)
        y = y if c.pre_ln else ln1(y)
        h = ln2(y) if c.pre_ln else y
        y = y + MlpBlock(c)(h, rate, train)
        return y if c.pre_ln else ln2(y)


class Encoder(nn.Module):
    config: TransformerConfig
    shared_embedding: nn.Module

    @nn.compact
    def __call__(self, inputs, positions=None, segmentation=None, rate=0.0, train=False):
        c = self.config
        mask = nn.make_attention_mask(inputs > 0, inputs > 0)
        if segmentation is not None:
            mask = nn.combine_masks(
                mask, nn.make_attention_mask(segmentation, segmentation, jnp.equal)
            )
        x = self.shared_embedding(inputs.astype(jnp.int32))
        x = dropout(AddPositionEmbs(c)(x, positions), rate, self.make_rng("dropout") if train else None)
        for i in range(c.num_layers):
            x = Encoder1DBlock(c, name=f"encoderblock_{i}")(x, mask, rate, train)
        return nn.LayerNorm(epsilon=1e-6, name="encoder_layernorm")(x) if c.pre_ln else x


class Decoder(nn.Module):
    config: TransformerConfig
    shared_embedding: nn.Module
    decode: bool = False

    @nn.compact
    def __call__(
        self, encoded, inputs, targets, positions=None, inputs_segmentation=None,
        targets_segmentation=None, rate=0.0, train=False,
    ):
        c = self.config
        if self.decode:
            self_mask = None  # causality comes from the cache
            cross_mask = nn.make_attention_mask(jnp.ones_like(targets) > 0, inputs > 0)
            y = targets
        else:
            self_mask = nn.combine_masks(
                nn.make_attention_mask(targets > 0, targets > 0), nn.make_causal_mask(targets)
            )
            cross_mask = nn.make_attention_mask(targets > 0, inputs > 0)
            if targets_segmentation is not None:
                self_mask = nn.combine_masks(
                    self_mask,
                    nn.make_attention_mask(targets_segmentation, targets_segmentation, jnp.equal),
                )
                cross_mask = nn.combine_masks(
                    cross_mask,
                    nn.make_attention_mask(targets_segmentation, inputs_segmentation, jnp.equal),
                )
            y = shift_right(targets)
        y = self.shared_embedding(y.astype(jnp.int32))
        y = dropout(AddPositionEmbs(c, self.decode)(y, positions), rate, self.make_rng("dropout") if train else None)
        for i in range(c.num_layers):
            y = EncoderDecoder1DBlock(c, self.decode, name=f"encoderdecoderblock_{i}")(
                y, encoded, self_mask, cross_mask, rate, train
            )
        if c.pre_ln:
            y = nn.LayerNorm(epsilon=1e-6, name="encoderdecoder_layernorm")(y)
        logits = self.shared_embedding.attend(y.astype(jnp.float32))
        return logits / jnp.sqrt(jnp.float32(y.shape[-1]))


class Transformer(nn.Module):
    """``__call__`` gives teacher-forced logits [B, L, V]; ``encode``/``decode`` for search."""

    config: TransformerConfig = TransformerConfig()
    decode: bool = False

    def setup(self) -> None:
        c = self.config
        self.shared_embedding = nn.Embed(
            c.vocab_size, c.emb_dim, embedding_init=nn.initializers.normal(stddev=1.0)
        )
        self.encoder = Encoder(c, self.shared_embedding)
        self.decoder = Decoder(c, self.shared_embedding, self.decode)

    def encode(self, inputs, positions=None, segmentation=None, rate=0.0, train=False):
        return self.encoder(inputs, positions, segmentation, rate, train)

    def decode_step(self, encoded, inputs, targets):
        """Logits for one new target token per row (decode mode, uses the cache)."""
        return self.decoder(encoded, inputs, targets)

    def __call__(
        self,
        inputs: jax.Array,
        targets: jax.Array,
        inputs_positions: jax.Array | None = None,
        targets_positions: jax.Array | None = None,
        inputs_segmentation: jax.Array | None = None,
        targets_segmentation: jax.Array | None = None,
        rate: float | jax.Array = 0.0,
        train: bool = False,
    ) -> jax.Array:
        encoded = self.encoder(inputs, inputs_positions, inputs_segmentation, rate, train)
        return self.decoder(
            encoded, inputs, targets, targets_positions, inputs_segmentation,
            targets_segmentation, rate, train,
        )
