"""The DeepSpeech model of AlgoPerf's librispeech_deepspeech JAX workload.

frontend (log-mel) -> SpecAugment (train) -> conv subsampling (4x, no positions) ->
dropout -> 6 x [x (+)= BiLSTM(Norm(x))] -> 3 x [x (+)= Dropout(m act(Dense(Norm(x))))] ->
LayerNorm -> Dense(vocab).

Norm is the masked BatchNorm (or, in _norm_and_spec_aug, the custom LayerNorm, and then
no decoder LayerNorm). The BiLSTM is flax's ``OptimizedLSTMCell`` (256 units a direction,
outputs concatenated forward first); the backward pass reverses only each sequence's
valid frames, keeping padding at the end.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from algoperf.layers import dropout

from ..librispeech_conformer.frontend import (
    ConvSubsampling,
    LayerNorm,
    MaskedBatchNorm,
    log_mel,
    spec_augment,
)

Activation = Callable[[jax.Array], jax.Array]
XAVIER = nn.initializers.xavier_uniform()
FFN_DROPOUT_WITH_RESIDUAL = 0.1  # the reference hard-wires it when residuals are on


class Norm(nn.Module):
    """Masked BatchNorm, or the custom LayerNorm (masking padded frames likewise)."""

    use_layer_norm: bool = False

    @nn.compact
    def __call__(self, x, paddings, train: bool) -> jax.Array:
        if self.use_layer_norm:
            return LayerNorm()(x)
        return MaskedBatchNorm()(x, paddings, train)


class BiLSTM(nn.Module):
    units: int = 256

    @nn.compact
    def __call__(self, x: jax.Array, paddings: jax.Array) -> jax.Array:
        lengths = jnp.sum(1.0 - paddings, axis=1).astype(jnp.int32)
        fwd = nn.RNN(nn.OptimizedLSTMCell(self.units), name="forward")(x)
        bwd = nn.RNN(nn.OptimizedLSTMCell(self.units), reverse=True, keep_order=True, name="backward")(
            x, seq_lengths=lengths
        )
        return jnp.concatenate([fwd, bwd], axis=-1)


class DeepSpeech(nn.Module):
    """(audio [B, N], paddings [B, N]) -> (logits [B, T', vocab], logit paddings [B, T'])."""

    vocab_size: int = 1024
    dim: int = 512
    num_lstm_layers: int = 6
    num_ffn_layers: int = 3
    lstm_units: int = 256
    subsampling_channels: int = 512
    activation: Activation = nn.relu
    use_residual: bool = True
    use_layer_norm: bool = False  # _norm_and_spec_aug: LayerNorm for every BatchNorm
    decoder_layer_norm: bool = True
    num_time_masks: int = 10
    num_freq_masks: int = 2

    @nn.compact
    def __call__(self, audio, audio_paddings, train: bool = False, dropout_rate: float | jax.Array = 0.1):
        x, paddings = log_mel(audio, audio_paddings)
        if train:
            x = spec_augment(self.make_rng("dropout"), x, paddings, self.num_time_masks, self.num_freq_masks)
        x, paddings = ConvSubsampling(self.dim, self.subsampling_channels, self.activation)(x, paddings)
        x = dropout(x, dropout_rate, self.make_rng("dropout") if train else None)
        for _ in range(self.num_lstm_layers):
            y = BiLSTM(self.lstm_units)(Norm(self.use_layer_norm)(x, paddings, train), paddings)
            x = x + y if self.use_residual else y
        m = (1.0 - paddings)[..., None]
        ffn_rate = FFN_DROPOUT_WITH_RESIDUAL if self.use_residual else dropout_rate
        for _ in range(self.num_ffn_layers):
            y = Norm(self.use_layer_norm)(x, paddings, train)
            y = self.activation(nn.Dense(self.dim, kernel_init=XAVIER)(y)) * m
            y = dropout(y, ffn_rate, self.make_rng("dropout") if train else None)
            x = x + y if self.use_residual else y
        if self.decoder_layer_norm:
            x = LayerNorm()(x)
        return nn.Dense(self.vocab_size, kernel_init=XAVIER, name="Dense_out")(x), paddings
