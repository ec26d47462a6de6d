"""Generated datasets (the small suite's synthetic workloads): made once, then read from a cache.

A dataset is a flat dict of numpy arrays saved as one ``.npz``: ``<root>/<name>/<name>_<tag>.npz``,
where root is ``--data-dir`` or ``$XDG_CACHE_HOME/algoperf`` (``~/.cache/algoperf``) and the
tag hashes every constant the data depends on, so a change of generator gives a new file
instead of stale arrays.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np


def cache_path(data_dir: str | None, name: str, *key: object) -> Path:
    """Where dataset ``name`` generated with constants ``key`` is kept."""
    root = Path(data_dir) if data_dir else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "algoperf"
    tag = hashlib.sha1("-".join(str(k) for k in key).encode()).hexdigest()[:8]
    return root / name / f"{name}_{tag}.npz"


def cached_arrays(path: Path, generate: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays saved at ``path``, generated and saved first if missing.

    Saved under a temporary name and renamed: concurrent trials never read a half-written file.
    """
    if path.exists():
        with np.load(path) as f:
            return dict(f)
    arrays = generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return arrays
