"""Generated speech: Conformer + CTC on dual-tone spelled words (LibriSpeech's small twin)."""

from .workload import SpeechGeluWorkload, SpeechWorkload

WORKLOADS = {"speech": SpeechWorkload, "speech_gelu": SpeechGeluWorkload}
