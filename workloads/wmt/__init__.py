"""AlgoPerf's WMT workloads (de->en Transformer, BLEU) and their variants; TFDS data."""

from .workload import (
    WmtAttentionTempWorkload,
    WmtGluTanhWorkload,
    WmtPostLnWorkload,
    WmtWorkload,
)

WORKLOADS = {
    "wmt": WmtWorkload,
    "wmt_post_ln": WmtPostLnWorkload,
    "wmt_attention_temp": WmtAttentionTempWorkload,
    "wmt_glu_tanh": WmtGluTanhWorkload,
}
