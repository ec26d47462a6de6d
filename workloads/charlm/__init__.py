"""charlm: a byte-level Transformer language model on CPython's pydoc topics (no download)."""

from .workload import CharlmPostLnWorkload, CharlmWorkload

WORKLOADS = {"charlm": CharlmWorkload, "charlm_post_ln": CharlmPostLnWorkload}
