"""The generated-dataset cache the small suite's synthetic workloads share."""

from __future__ import annotations

import numpy as np

from algoperf.data import generated


def test_generated_once_then_read_and_keyed_by_every_constant(tmp_path):
    calls = []

    def generate():
        calls.append(1)
        return {"x": np.arange(5.0)}

    path = generated.cache_path(str(tmp_path), "toy", 1, 42)
    assert path.parent == tmp_path / "toy" and path.suffix == ".npz"
    first = generated.cached_arrays(path, generate)
    again = generated.cached_arrays(path, generate)
    assert len(calls) == 1 and np.array_equal(first["x"], again["x"])
    assert not list(path.parent.glob("*.tmp.npz"))  # written under a temporary name, then renamed
    assert generated.cache_path(str(tmp_path), "toy", 1, 43) != path  # another constant: another file
