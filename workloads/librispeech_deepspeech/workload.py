"""librispeech_deepspeech: LibriSpeech 960h with DeepSpeech (conv + 6 BiLSTM + 3 FFN), CTC, WER.

Data, loss and evaluation are the Conformer workload's (``LibriSpeechWorkloadBase``).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from ..librispeech_conformer.workload import LibriSpeechWorkloadBase
from .model import DeepSpeech


class LibriSpeechDeepSpeechWorkload(LibriSpeechWorkloadBase):
    name = "librispeech_deepspeech"
    description = "LibriSpeech 960h, DeepSpeech (6 BiLSTM x 256) + CTC, WER"
    output_layer = "Dense_out"
    activation = staticmethod(nn.relu)
    use_residual = True
    use_layer_norm = False
    decoder_layer_norm = True
    num_time_masks = 10
    num_freq_masks = 2
    validation_target_value = 0.119936
    test_target_value = 0.074143
    max_allowed_runtime_sec = 44_405.0
    step_hint = 38_400

    @functools.cached_property
    def model(self) -> nn.Module:
        return DeepSpeech(**{
            "activation": self.activation,
            "use_residual": self.use_residual,
            "use_layer_norm": self.use_layer_norm,
            "decoder_layer_norm": self.decoder_layer_norm,
            "num_time_masks": self.num_time_masks,
            "num_freq_masks": self.num_freq_masks,
            **self.model_overrides,
        })


class LibriSpeechDeepSpeechTanhWorkload(LibriSpeechDeepSpeechWorkload):
    """Variant: tanh in the conv subsampling and the FFN layers."""

    name = "librispeech_deepspeech_tanh"
    base_workload = "librispeech_deepspeech"
    description = "LibriSpeech, DeepSpeech with tanh, WER"
    activation = staticmethod(jnp.tanh)
    validation_target_value = 0.150883
    test_target_value = 0.098613


class LibriSpeechDeepSpeechNoResNetWorkload(LibriSpeechDeepSpeechWorkload):
    """Variant: no residual connections (the FFN dropout then uses the passed rate)."""

    name = "librispeech_deepspeech_no_resnet"
    base_workload = "librispeech_deepspeech"
    description = "LibriSpeech, DeepSpeech without residuals, WER"
    use_residual = False
    validation_target_value = 0.131564
    test_target_value = 0.079297


class LibriSpeechDeepSpeechNormAndSpecAugWorkload(LibriSpeechDeepSpeechWorkload):
    """Variant: LayerNorm for every BatchNorm, no decoder LayerNorm, 4 freq / 15 time masks,
    eval batch size 128."""

    name = "librispeech_deepspeech_norm_and_spec_aug"
    base_workload = "librispeech_deepspeech"
    description = "LibriSpeech, DeepSpeech with LayerNorm and stronger SpecAugment, WER"
    use_layer_norm = True
    decoder_layer_norm = False
    num_time_masks = 15
    num_freq_masks = 4
    eval_batch_size = 128
    validation_target_value = 0.14342
    test_target_value = 0.090976
