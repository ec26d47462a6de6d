"""A small decoder-only Transformer over bytes (the small twin of AlgoPerf's LM model).

Token embedding + learned absolute position embedding, ``num_layers`` blocks of causal
multi-head self-attention and an MLP, each sublayer wrapped as

    pre-LN (default):  x <- x + f(LN(x))          and a final LN before the output layer
    post-LN (variant): x <- LN(x + f(x))           and no final LN

then an untied linear output layer (init N(0, 0.02^2)) to the 256 byte logits. As in
AlgoPerf's Transformers the attention projections have no biases; MLP layers do.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from algoperf.layers import dropout


class PositionEmbedding(nn.Module):
    """Learned absolute positions: a (max_len, dim) table added to the token embeddings."""

    max_len: int
    dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        table = self.param("embedding", nn.initializers.normal(0.02), (self.max_len, self.dim))
        return x + table[None, : x.shape[1]]


class DecoderBlock(nn.Module):
    """Causal self-attention and an MLP, each with a residual connection and a LayerNorm."""

    dim: int
    num_heads: int
    mlp_dim: int
    activation: Callable[[jax.Array], jax.Array]
    pre_ln: bool

    @nn.compact
    def __call__(
        self, x: jax.Array, mask: jax.Array, rate: float, rng: jax.Array | None
    ) -> jax.Array:
        rngs = [None] * 3 if rng is None else list(jax.random.split(rng, 3))
        attention = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, qkv_features=self.dim, use_bias=False, name="attention"
        )
        ln1, ln2 = nn.LayerNorm(name="ln1"), nn.LayerNorm(name="ln2")

        def mlp(h: jax.Array) -> jax.Array:
            h = self.activation(nn.Dense(self.mlp_dim, name="mlp_in")(h))
            h = dropout(h, rate, rngs[1])
            return nn.Dense(self.dim, name="mlp_out")(h)

        if self.pre_ln:
            h = ln1(x)
            x = x + dropout(attention(h, h, mask=mask), rate, rngs[0])
            return x + dropout(mlp(ln2(x)), rate, rngs[2])
        x = ln1(x + dropout(attention(x, x, mask=mask), rate, rngs[0]))
        return ln2(x + dropout(mlp(x), rate, rngs[2]))


class CharTransformer(nn.Module):
    """Decoder-only Transformer: (B, L) int byte ids -> (B, L, vocab) next-byte logits."""

    vocab_size: int = 256
    dim: int = 64
    num_heads: int = 4
    num_layers: int = 2
    mlp_dim: int = 256
    max_len: int = 128
    activation: Callable[[jax.Array], jax.Array] = nn.gelu
    pre_ln: bool = True

    @nn.compact
    def __call__(
        self, tokens: jax.Array, dropout_rate: float = 0.0, rng: jax.Array | None = None
    ) -> jax.Array:
        x = nn.Embed(
            self.vocab_size, self.dim, embedding_init=nn.initializers.normal(0.02), name="embed"
        )(tokens)
        x = PositionEmbedding(self.max_len, self.dim, name="pos_embed")(x)
        rngs = (
            [None] * (self.num_layers + 1)
            if rng is None
            else list(jax.random.split(rng, self.num_layers + 1))
        )
        x = dropout(x, dropout_rate, rngs[-1])
        mask = nn.make_causal_mask(tokens)
        for i in range(self.num_layers):
            x = DecoderBlock(
                self.dim,
                self.num_heads,
                self.mlp_dim,
                self.activation,
                self.pre_ln,
                name=f"block_{i}",
            )(x, mask, dropout_rate, rngs[i])
        if self.pre_ln:
            x = nn.LayerNorm(name="ln_final")(x)
        # A small output init (std 0.02) starts the model near the uniform prediction.
        output = nn.Dense(self.vocab_size, kernel_init=nn.initializers.normal(0.02), name="output")
        return output(x).astype(jnp.float32)
