"""LibriSpeech 960h ASR with a Conformer and its variants (AlgoPerf v0.6)."""

from .workload import (
    LibriSpeechConformerAttentionTemperatureWorkload,
    LibriSpeechConformerGeluWorkload,
    LibriSpeechConformerLayerNormWorkload,
    LibriSpeechConformerWorkload,
)

WORKLOADS = {
    "librispeech_conformer": LibriSpeechConformerWorkload,
    "librispeech_conformer_attention_temperature": LibriSpeechConformerAttentionTemperatureWorkload,
    "librispeech_conformer_layernorm": LibriSpeechConformerLayerNormWorkload,
    "librispeech_conformer_gelu": LibriSpeechConformerGeluWorkload,
}
