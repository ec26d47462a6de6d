"""Running submissions written for older AlgoPerf releases (v0.5 era) unmodified.

* ``algorithmic_efficiency``: v0.5's package name, answered by ``algoperf.compat.algorithmic_efficiency``
  for a submission's own imports only (``imports``).
* JAX names newer JAX removed (``jax.tree_map``, ...), given to a submission's modules
  only, through a proxy of ``jax`` they import (``imports``); the real ``jax`` is untouched.
* Helper modules imported by the path they had in the competition's repository resolve
  to the submission's own folder (``imports``).
* pmap-style submissions (replicated params, per-device batches) detected from their
  source (``style``) and driven through an adapter by the v0.6 runner (``pmap_adapter``).
"""
