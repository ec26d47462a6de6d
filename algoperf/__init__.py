"""algoperf: a benchmark service for neural-network training algorithms.

AlgoPerf-compatible (rules v0.6): ``algoperf.spec`` states the submission and workload
interface, ``algoperf.runner.trial`` runs one timed trial, ``algoperf.cli`` is the command line.
"""

__version__ = "0.1.0"
