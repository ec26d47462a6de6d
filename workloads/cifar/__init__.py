"""CIFAR-10 ResNet-18: AlgoPerf's ``cifar`` development workload, read from the python-pickle batches."""

from .workload import CifarWorkload

WORKLOADS = {"cifar": CifarWorkload}
