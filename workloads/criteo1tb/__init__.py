"""Criteo 1TB click-through prediction with DLRM-small and its variants (AlgoPerf v0.6)."""

from .workload import (
    Criteo1TbDlrmSmallEmbedInitWorkload,
    Criteo1TbDlrmSmallLayerNormWorkload,
    Criteo1TbDlrmSmallResNetWorkload,
    Criteo1TbDlrmSmallWorkload,
)

WORKLOADS = {
    "criteo1tb": Criteo1TbDlrmSmallWorkload,
    "criteo1tb_layernorm": Criteo1TbDlrmSmallLayerNormWorkload,
    "criteo1tb_resnet": Criteo1TbDlrmSmallResNetWorkload,
    "criteo1tb_embed_init": Criteo1TbDlrmSmallEmbedInitWorkload,
}
