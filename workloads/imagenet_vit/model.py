"""ViT-S/16 in Flax linen, parameter-for-parameter AlgoPerf's JAX ``imagenet_vit``.

Width 384, depth 12, MLP 1536, 6 heads, 16x16 patches, no class token, a fixed 2-D
sin-cos position embedding, global average pooling (or a MAP head), a 384-wide tanh
pre-logits layer and a zero-initialised head. 22,122,472 parameters; the ``glu``,
``post_ln`` and ``map`` variants have 50,452,456, 22,121,704 and 23,896,552.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Flax's gelu is the tanh approximation, as in the reference.
gelu = nn.gelu

VARIANTS = {
    # name: (width, depth, mlp_dim, num_heads, patch)
    "S/16": (384, 12, 1536, 6, 16),
}


def posemb_sincos_2d(h: int, w: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
    """MoCo-v3 2-D sin-cos position embedding, shape (1, h*w, width).

    With q = width/4 and omega_k = temperature^(-k/(q-1)), k = 0..q-1, token (y, x)
    (index y*w + x) gets [sin(x omega), cos(x omega), sin(y omega), cos(y omega)].
    """
    if width % 4:
        raise ValueError(f"width {width} must be a multiple of 4 for the sin-cos embedding")
    y, x = np.mgrid[:h, :w]
    q = width // 4
    omega = 1.0 / temperature ** (np.arange(q, dtype=np.float32) / (q - 1))
    ys = y.reshape(-1, 1).astype(np.float32) * omega[None]
    xs = x.reshape(-1, 1).astype(np.float32) * omega[None]
    pe = np.concatenate([np.sin(xs), np.cos(xs), np.sin(ys), np.cos(ys)], axis=1)
    return pe[None].astype(np.float32)


class MlpBlock(nn.Module):
    """Dense_0 -> gelu [-> * Dense_1(h) under GLU] -> dropout -> Dense_1 (Dense_2 under GLU).

    Kernels xavier_uniform, biases N(0, 1e-6^2) as in the reference.
    """

    mlp_dim: int
    use_glu: bool = False
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        dense = dict(kernel_init=nn.initializers.xavier_uniform(), bias_init=nn.initializers.normal(stddev=1e-6))
        width = x.shape[-1]
        h = gelu(nn.Dense(self.mlp_dim, **dense, name="Dense_0")(x))
        if self.use_glu:
            # The reference gates the post-GELU hidden with a linear map of itself.
            h = h * nn.Dense(self.mlp_dim, **dense, name="Dense_1")(h)
        h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
        return nn.Dense(width, **dense, name="Dense_2" if self.use_glu else "Dense_1")(h)


def _attention(num_heads: int, name: str) -> nn.MultiHeadDotProductAttention:
    # xavier_uniform is applied to the flattened (d, d) kernel, biases are zero; no
    # dropout on the attention probabilities (the JAX reference's behaviour).
    return nn.MultiHeadDotProductAttention(
        num_heads=num_heads, kernel_init=nn.initializers.xavier_uniform(), deterministic=True, name=name
    )


class Encoder1DBlock(nn.Module):
    """Pre-LN: x + drop(Attn(LN(x))), then + drop(MLP(LN(x))). Post-LN: LN(x + drop(Attn(x))), ..."""

    mlp_dim: int
    num_heads: int
    use_glu: bool = False
    use_post_layer_norm: bool = False
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        ln0 = nn.LayerNorm(name="LayerNorm_0")
        attention = _attention(self.num_heads, "MultiHeadDotProductAttention_1")
        ln2 = nn.LayerNorm(name="LayerNorm_2")
        mlp = MlpBlock(self.mlp_dim, self.use_glu, self.dropout_rate, name="MlpBlock_3")
        drop = nn.Dropout(self.dropout_rate)
        if not self.use_post_layer_norm:
            y = ln0(x)
            x = x + drop(attention(y), deterministic=deterministic)
            y = ln2(x)
            return x + drop(mlp(y, deterministic), deterministic=deterministic)
        # Post-LN, the maths the reference intends (its JAX code fails to build here: G7).
        x = ln0(x + drop(attention(x), deterministic=deterministic))
        return ln2(x + drop(mlp(x, deterministic), deterministic=deterministic))


class Encoder(nn.Module):
    depth: int
    mlp_dim: int
    num_heads: int
    use_glu: bool = False
    use_post_layer_norm: bool = False
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        for i in range(self.depth):
            x = Encoder1DBlock(
                self.mlp_dim, self.num_heads, self.use_glu, self.use_post_layer_norm, self.dropout_rate,
                name=f"encoderblock_{i}",
            )(x, deterministic)
        if not self.use_post_layer_norm:
            x = nn.LayerNorm(name="encoder_layernorm")(x)
        return x


class MAPHead(nn.Module):
    """Multihead attention pooling: a learned probe attends to the tokens, then an MLP."""

    mlp_dim: int
    num_heads: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, _, d = x.shape
        probe = self.param("probe", nn.initializers.xavier_uniform(), (1, 1, d), x.dtype)
        probe = jnp.tile(probe, (n, 1, 1))
        x = _attention(self.num_heads, "MultiHeadDotProductAttention_0")(probe, x)
        y = nn.LayerNorm(name="LayerNorm_0")(x)
        # The reference calls this MLP with its default (deterministic): it never drops.
        x = x + MlpBlock(self.mlp_dim, name="MlpBlock_0")(y, deterministic=True)
        return x[:, 0]


class ViT(nn.Module):
    """ViT without class token; GAP or MAP pooling; tanh pre-logits; zero-init head."""

    num_classes: int = 1000
    patch_size: tuple[int, int] = (16, 16)
    width: int = 384
    depth: int = 12
    mlp_dim: int = 1536
    num_heads: int = 6
    rep_size: int | bool = True
    head_zeroinit: bool = True
    use_glu: bool = False
    use_post_layer_norm: bool = False
    use_map: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, dropout_rate: float = 0.0) -> jax.Array:
        deterministic = not train
        x = nn.Conv(self.width, self.patch_size, strides=self.patch_size, padding="VALID", name="conv_patch_extract")(x)
        n, h, w, c = x.shape
        x = jnp.reshape(x, (n, h * w, c))
        x = x + jnp.asarray(posemb_sincos_2d(h, w, c), x.dtype)
        x = nn.Dropout(dropout_rate)(x, deterministic=deterministic)
        x = Encoder(
            self.depth, self.mlp_dim, self.num_heads, self.use_glu, self.use_post_layer_norm, dropout_rate,
            name="Transformer",
        )(x, deterministic)
        if self.use_map:
            x = MAPHead(self.mlp_dim, self.num_heads, name="MAPHead_0")(x)
        else:
            x = jnp.mean(x, axis=1)
        if self.rep_size:
            size = self.width if self.rep_size is True else self.rep_size
            x = jnp.tanh(nn.Dense(size, name="pre_logits")(x))
        head_init = nn.initializers.zeros if self.head_zeroinit else nn.initializers.lecun_normal()
        return nn.Dense(self.num_classes, kernel_init=head_init, bias_init=nn.initializers.zeros, name="head")(x)


def vit(variant: str = "S/16", **kwargs) -> ViT:
    """A ViT of ``variant`` (only 'S/16' is used by AlgoPerf); kwargs set the flags."""
    width, depth, mlp_dim, heads, patch = VARIANTS[variant]
    return ViT(width=width, depth=depth, mlp_dim=mlp_dim, num_heads=heads, patch_size=(patch, patch), **kwargs)
