"""algoperf: a benchmark service for neural-network training algorithms.

AlgoPerf-compatible (rules v0.6): ``algoperf.spec`` states the submission and workload
interface, ``algoperf.runner.trial`` runs one timed trial, ``algoperf.cli`` is the command line.
"""

import os

__version__ = "0.1.0"

# XLA's CPU runtime can wedge its multi-threaded Eigen pool: a trial then waits in
# block_until_ready forever (seen here: a Shampoo trial after step 1, on two busy cores, three
# times). Eigen runs single-threaded inside XLA's CPU ops instead (docs/differences.md R13).
# Set before any JAX backend starts; an explicit setting in XLA_FLAGS is kept.
EIGEN_FLAG = "--xla_cpu_multi_thread_eigen"
USER_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")  # as given, before the line below
if EIGEN_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {EIGEN_FLAG}=false".strip()
