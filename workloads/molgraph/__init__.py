"""molgraph: a graph network (ogbg-style) on generated molecule-like graphs, target mAP."""

from .workload import MolgraphGeluWorkload, MolgraphWorkload

WORKLOADS = {"molgraph": MolgraphWorkload, "molgraph_gelu": MolgraphGeluWorkload}
