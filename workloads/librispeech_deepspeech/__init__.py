"""LibriSpeech 960h ASR with DeepSpeech and its variants (AlgoPerf v0.6)."""

from .workload import (
    LibriSpeechDeepSpeechNoResNetWorkload,
    LibriSpeechDeepSpeechNormAndSpecAugWorkload,
    LibriSpeechDeepSpeechTanhWorkload,
    LibriSpeechDeepSpeechWorkload,
)

WORKLOADS = {
    "librispeech_deepspeech": LibriSpeechDeepSpeechWorkload,
    "librispeech_deepspeech_tanh": LibriSpeechDeepSpeechTanhWorkload,
    "librispeech_deepspeech_no_resnet": LibriSpeechDeepSpeechNoResNetWorkload,
    "librispeech_deepspeech_norm_and_spec_aug": LibriSpeechDeepSpeechNormAndSpecAugWorkload,
}
