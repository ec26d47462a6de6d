"""ctr: DLRM-small on Criteo-like click logs drawn from a fixed random teacher."""

from .workload import CtrLayerNormWorkload, CtrWorkload

WORKLOADS = {"ctr": CtrWorkload, "ctr_layernorm": CtrLayerNormWorkload}
