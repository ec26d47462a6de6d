"""The submission's per-step scalars, kept on the device until the next eval."""

from __future__ import annotations

from typing import Any

import numpy as np


class MetricsLogger:
    """What ``workload.metrics_logger`` is: submissions log per-step scalars through it.

    ``append_scalar_metrics`` only stores the values (JAX arrays stay on the device, so
    logging forces no sync inside the timed step); the runner converts and writes them
    at the next eval, outside the timed region.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[int, dict[str, Any]]] = []

    def append_scalar_metrics(self, metrics: dict[str, Any], global_step: int, preemption_count: int | None = None, is_eval: bool = False) -> None:
        del preemption_count, is_eval
        self._pending.append((int(global_step), dict(metrics)))

    def drain(self) -> list[tuple[int, str, float]]:
        """The stored scalars as (step, name, float), oldest first; clears the buffer."""
        pending, self._pending = self._pending, []
        return [(step, name, float(np.asarray(value))) for step, metrics in pending for name, value in metrics.items()]
