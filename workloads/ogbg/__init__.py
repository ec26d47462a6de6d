"""AlgoPerf's ogbg workloads (ogbg-molpcba GNN) and their variants; data from TFDS files."""

from .workload import OgbgGeluWorkload, OgbgModelSizeWorkload, OgbgSiluWorkload, OgbgWorkload

WORKLOADS = {
    "ogbg": OgbgWorkload,
    "ogbg_gelu": OgbgGeluWorkload,
    "ogbg_silu": OgbgSiluWorkload,
    "ogbg_model_size": OgbgModelSizeWorkload,
}
