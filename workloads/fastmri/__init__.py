"""fastMRI knee single-coil reconstruction with a U-Net and its variants (AlgoPerf v0.6)."""

from .workload import (
    FastMriLayerNormWorkload,
    FastMriModelSizeWorkload,
    FastMriTanhWorkload,
    FastMriWorkload,
)

WORKLOADS = {
    "fastmri": FastMriWorkload,
    "fastmri_model_size": FastMriModelSizeWorkload,
    "fastmri_tanh": FastMriTanhWorkload,
    "fastmri_layernorm": FastMriLayerNormWorkload,
}
