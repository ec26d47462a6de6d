"""MNIST: AlgoPerf's development workload, read from the standard IDX files."""

from .workload import MnistWorkload

WORKLOADS = {"mnist": MnistWorkload}
