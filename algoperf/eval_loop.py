"""The eval loop every workload shares: dispatch every batch, then fetch once.

JAX dispatches asynchronously: calling a jitted eval step returns at once with arrays the
device is still computing. Fetching each batch's result before the next dispatch would
make the device wait on the host at every batch; dispatching all of them first and
fetching once keeps the device busy and costs one host round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import numpy as np


def dispatch_then_fetch(step: Callable[[Any], Any], batches: Iterable[Any]) -> list[Any]:
    """``step(batch)`` for every batch, dispatched first, fetched once (as host arrays)."""
    pending = [step(batch) for batch in batches]
    return [jax.tree.map(np.asarray, out) for out in jax.device_get(pending)]


def summed(outputs: Sequence[dict[str, Any]], keys: Iterable[str]) -> dict[str, float]:
    """``sum_b outputs[b][k]`` for each key, in float64 (per-batch sums are float32)."""
    return {k: float(np.sum([np.asarray(o[k], np.float64) for o in outputs])) for k in keys}
