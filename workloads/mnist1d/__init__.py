"""MNIST-1D: 1-D digit signals generated locally by the ``mnist1d`` package (no download)."""

from .workload import Mnist1dGeluWorkload, Mnist1dWorkload

WORKLOADS = {"mnist1d": Mnist1dWorkload, "mnist1d_gelu": Mnist1dGeluWorkload}
