"""A decoder-only language model workload (provisional targets); local token data."""

from .workload import LmWorkload

WORKLOADS = {"lm": LmWorkload}
