"""What the runner does to the device state of a trial: a cold start, placement, a finiteness check."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import threadpoolctl

from algoperf import jax_sharding_utils


def replicated(tree: Any) -> Any:
    """``tree`` with every array placed on all of the trial's devices; other leaves kept."""
    sharding = jax_sharding_utils.get_replicate_sharding()
    return jax.tree.map(lambda x: jax.device_put(x, sharding) if isinstance(x, jax.Array | np.ndarray) else x, tree)


def cold_start() -> None:
    """Make the next trial start as a fresh process would: no compiled code from earlier.

    The one rule for every executor (local trials share a process; Ray gives each its
    own): the in-memory caches of compiled functions are dropped and the persistent
    compilation cache is off, so compilation is charged to every trial that needs it,
    never only to whichever ran first.
    """
    jax.config.update("jax_enable_compilation_cache", False)
    jax.clear_caches()


def serial_host_blas() -> None:
    """Give the host's BLAS/LAPACK libraries (numpy's and scipy's OpenBLAS) one thread each.

    XLA's CPU runtime already spreads work over its own thread pool, and on CPU jax runs
    linear algebra (``eigh``, ``cholesky``, ``svd``) through scipy's LAPACK inside that pool.
    A multi-threaded OpenBLAS there oversubscribes the cores (jax-ml/jax#38056 and #39292
    report wrong results and heap corruption from that mix; a Shampoo trial once hung past
    15 minutes in CI on two busy cores). One BLAS thread keeps every trial's charged time a
    measure of the submission, not of thread contention. Applies for the process's lifetime.
    """
    # threadpoolctl limits only the libraries loaded when it is called, and jax loads scipy's
    # OpenBLAS only at its first LAPACK call (inside a trial's first step): load it now.
    import scipy.linalg  # noqa: F401 - for its side effect: scipy's OpenBLAS loaded

    threadpoolctl.threadpool_limits(limits=1, user_api="blas")


def all_finite(tree: Any) -> bool:
    leaves = [x for x in jax.tree.leaves(tree) if hasattr(x, "dtype") and np.issubdtype(x.dtype, np.inexact)]
    if not leaves:
        return True
    return bool(jax.device_get(jax.tree.reduce(lambda a, b: a & b, [jax.numpy.isfinite(x).all() for x in leaves])))
