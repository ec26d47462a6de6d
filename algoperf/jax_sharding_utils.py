"""Sharding helpers with the names AlgoPerf v0.6 JAX submissions import.

One mesh axis, ``batch``, over all devices the trial owns: parameters and optimizer
state are replicated, batches are split along their leading dimension.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"


@functools.cache
def _mesh(devices: tuple[Any, ...]) -> Mesh:
    return Mesh(devices, (BATCH_AXIS,))


_trial_devices: tuple[Any, ...] | None = None


def get_mesh() -> Mesh:
    """The one-axis mesh over the trial's devices (``jax.devices()`` unless narrowed)."""
    return _mesh(_trial_devices or tuple(jax.devices()))


@contextlib.contextmanager
def use_devices(devices: Sequence[Any]) -> Iterator[None]:
    """Run the enclosed code data-parallel over ``devices`` only (tests compare 1 and 8)."""
    global _trial_devices
    previous, _trial_devices = _trial_devices, tuple(devices)
    try:
        yield
    finally:
        _trial_devices = previous


def get_replicate_sharding(mesh: Mesh | None = None) -> NamedSharding:
    """Every device holds the whole array.

    ``mesh``: a submission's own mesh (some published ones build one and pass it, as an
    AlgoPerf development version's API took it); default the trial's.
    """
    return NamedSharding(mesh or get_mesh(), PartitionSpec())


def get_batch_dim_sharding(mesh: Mesh | None = None) -> NamedSharding:
    """The leading (batch) dimension is split over the devices (of ``mesh``, default the trial's)."""
    mesh = mesh or get_mesh()
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


# The same, by the name an AlgoPerf development version used (submissions call it with a mesh).
get_batch_sharding = get_batch_dim_sharding


def shard_along_batch_dim(tree: Any) -> Any:
    """Place every array of ``tree`` split along its leading dimension."""
    sharding = get_batch_dim_sharding()
    return jax.tree.map(lambda x: jax.device_put(x, sharding), tree)


def replicate(tree: Any) -> Any:
    """Place every array of ``tree`` on all devices."""
    sharding = get_replicate_sharding()
    return jax.tree.map(lambda x: jax.device_put(x, sharding), tree)


def display_shard_info(x: jax.Array) -> None:
    """Print where each shard of ``x`` lives."""
    for shard in x.addressable_shards:
        print(f"shard.device: {shard.device}, index: {shard.index}, replica_id: {shard.replica_id}")
