"""A decoder-only Transformer LM after AlgoPerf's upstream finewebedu_lm (NanoDO lineage).

D = 1024, 8 heads of 128, 12 pre-RMSNorm blocks (eps 1e-6, scale only) and a final
RMSNorm, GPT-2 vocabulary 50,257 tied with the output (``logits = h E^T``), context 1024.
Attention: q/k/v without bias, RoPE (theta 5e5, adjacent pairs ``(2i, 2i+1)``), QK-norm
(``q / (||q|| + 1e-6)`` per head, same for k), q times a learned scalar ``attn_scale``
(init ``log2(L^2 - L)``), causal softmax with scale 1. MLP: ``Dense(D -> 2F)``, sigmoid GLU
``a * sigmoid(b)``, ``Dense(F -> D)`` with F = 4096. No biases, no dropout. Init: N(0, 0.02),
residual output projections N(0, 0.02 / sqrt(2 * layers)). Parameters in float32,
compute in ``dtype`` (bfloat16 by default); logits are returned in float32.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LmConfig:
    vocab_size: int = 50_257
    dim: int = 1024
    num_heads: int = 8
    num_layers: int = 12
    mlp_dim: int = 4096
    seq_len: int = 1024
    rope_theta: float = 500_000.0
    dtype: jnp.dtype = jnp.bfloat16


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + 1e-6) * scale`` (scale init 1), computed in float32."""

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + 1e-6)
        return (y * scale).astype(self.dtype)


def rope(x: jax.Array, theta: float) -> jax.Array:
    """Rotary embedding on adjacent pairs: ``(x_2i, x_2i+1)`` rotated by ``p theta^(-2i/d)``.

    ``x`` [B, L, H, d]; positions 0..L-1.
    """
    length, d = x.shape[1], x.shape[-1]
    freqs = theta ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)
    angles = jnp.arange(length, dtype=jnp.float32)[:, None] * freqs[None]  # [L, d/2]
    cos, sin = jnp.cos(angles)[None, :, None], jnp.sin(angles)[None, :, None]
    x32 = x.astype(jnp.float32).reshape(x.shape[:-1] + (d // 2, 2))
    even, odd = x32[..., 0], x32[..., 1]
    out = jnp.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1)
    return out.reshape(x.shape).astype(x.dtype)


class Attention(nn.Module):
    config: LmConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        head_dim = c.dim // c.num_heads
        init = nn.initializers.normal(0.02)
        out_init = nn.initializers.normal(0.02 / math.sqrt(2 * c.num_layers))
        proj = dict(features=(c.num_heads, head_dim), use_bias=False, kernel_init=init, dtype=c.dtype)
        q = nn.DenseGeneral(**proj, name="query")(x)
        k = nn.DenseGeneral(**proj, name="key")(x)
        v = nn.DenseGeneral(**proj, name="value")(x)
        q, k = rope(q, c.rope_theta), rope(k, c.rope_theta)
        q = q / (jnp.linalg.norm(q.astype(jnp.float32), axis=-1, keepdims=True) + 1e-6)
        k = k / (jnp.linalg.norm(k.astype(jnp.float32), axis=-1, keepdims=True) + 1e-6)
        length = c.seq_len
        scale = self.param(
            "attn_scale", nn.initializers.constant(math.log2(length**2 - length)), (), jnp.float32
        )
        q = (q * scale).astype(c.dtype)
        k = k.astype(c.dtype)
        y = jax.nn.dot_product_attention(q, k, v, scale=1.0, is_causal=True)
        return nn.DenseGeneral(
            c.dim, axis=(-2, -1), use_bias=False, kernel_init=out_init, dtype=c.dtype, name="out"
        )(y)


class Mlp(nn.Module):
    config: LmConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        h = nn.Dense(
            2 * c.mlp_dim, use_bias=False, kernel_init=nn.initializers.normal(0.02), dtype=c.dtype
        )(x)
        h = nn.glu(h)  # a * sigmoid(b) over the two halves
        out_init = nn.initializers.normal(0.02 / math.sqrt(2 * c.num_layers))
        return nn.Dense(c.dim, use_bias=False, kernel_init=out_init, dtype=c.dtype)(h)


class Block(nn.Module):
    config: LmConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        x = x + Attention(c)(RMSNorm(c.dtype)(x))
        return x + Mlp(c)(RMSNorm(c.dtype)(x))


class DecoderLM(nn.Module):
    """Token ids [B, L] -> next-token logits [B, L, V] (float32)."""

    config: LmConfig = LmConfig()

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        c = self.config
        embed = nn.Embed(
            c.vocab_size, c.dim, embedding_init=nn.initializers.normal(0.02), name="embed"
        )
        x = embed(tokens.astype(jnp.int32)).astype(c.dtype)
        for i in range(c.num_layers):
            x = Block(c, name=f"block_{i}")(x)
        x = RMSNorm(c.dtype, name="final_norm")(x)
        logits = jnp.einsum("bld,vd->blv", x, embed.embedding.astype(c.dtype))
        return logits.astype(jnp.float32)
