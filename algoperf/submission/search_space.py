"""Search spaces in AlgoPerf's JSON format and the trials drawn from them.

A search space file is either

* a dict ``name -> {"min": a, "max": b, "scaling": "linear" | "log"}`` or
  ``name -> {"feasible_points": [v, ...]}``, sampled quasi-randomly (scrambled Halton,
  ``scipy.stats.qmc``), or
* a list of fixed points ``[{name: value, ...}, ...]``, taken in order.

For a dict space, point i maps Halton coordinate u in [0, 1) to
``a + u (b - a)`` (linear), ``exp(log a + u (log b - log a))`` (log), or
``points[floor(u * len(points))]`` (feasible points). The same seed gives the same points.
"""

from __future__ import annotations

import collections
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCALINGS = ("linear", "log")


class SearchSpaceError(ValueError):
    """A search space that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class SearchSpace:
    """A parsed search space: ``fixed_points`` or ``dimensions`` (name -> spec)."""

    source: str
    fixed_points: tuple[dict[str, Any], ...] = ()
    dimensions: tuple[tuple[str, dict[str, Any]], ...] = ()

    def points(self, num_points: int, seed: int = 0) -> list[dict[str, Any]]:
        """The first ``num_points`` trial points (fixed points cycle if too few)."""
        if self.fixed_points:
            return [dict(self.fixed_points[i % len(self.fixed_points)]) for i in range(num_points)]
        from scipy.stats import qmc

        halton = qmc.Halton(d=len(self.dimensions), scramble=True, seed=seed)
        unit = halton.random(num_points)
        return [
            {name: _scale(spec, float(u)) for (name, spec), u in zip(self.dimensions, row, strict=True)}
            for row in unit
        ]


def _scale(spec: dict[str, Any], u: float) -> Any:
    if "feasible_points" in spec:
        points = spec["feasible_points"]
        return points[min(int(u * len(points)), len(points) - 1)]
    low, high = float(spec["min"]), float(spec["max"])
    if spec.get("scaling", "linear") == "log":
        return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return low + u * (high - low)


def _check_dimension(source: str, name: str, spec: Any) -> dict[str, Any]:
    where = f"{source}: key {name!r}"
    if not isinstance(spec, dict):
        raise SearchSpaceError(f"{where} must be an object with min/max/scaling or feasible_points, got {spec!r}")
    if "feasible_points" in spec:
        points = spec["feasible_points"]
        if not isinstance(points, list) or not points:
            raise SearchSpaceError(f"{where}: feasible_points must be a non-empty list")
        return spec
    missing = [k for k in ("min", "max") if k not in spec]
    if missing:
        raise SearchSpaceError(f"{where} lacks {' and '.join(missing)} (or give feasible_points)")
    low, high = spec["min"], spec["max"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        raise SearchSpaceError(f"{where}: min and max must be numbers, got {low!r} and {high!r}")
    if low > high:
        raise SearchSpaceError(f"{where}: min {low} is larger than max {high}")
    scaling = spec.get("scaling", "linear")
    if scaling not in SCALINGS:
        raise SearchSpaceError(f"{where}: scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}")
    if scaling == "log" and low <= 0:
        raise SearchSpaceError(f"{where}: log scaling needs min > 0, got {low}")
    return spec


def parse_search_space(data: Any, source: str = "<search space>") -> SearchSpace:
    """Validate ``data`` (the loaded JSON) and return a SearchSpace."""
    if isinstance(data, list):
        if not data:
            raise SearchSpaceError(f"{source}: the list of points is empty")
        for i, point in enumerate(data):
            if not isinstance(point, dict) or not point:
                raise SearchSpaceError(f"{source}: point {i} must be a non-empty object of name -> value")
        return SearchSpace(source=source, fixed_points=tuple(data))
    if isinstance(data, dict):
        if not data:
            raise SearchSpaceError(f"{source}: the search space is empty")
        dims = tuple((name, _check_dimension(source, name, spec)) for name, spec in data.items())
        return SearchSpace(source=source, dimensions=dims)
    raise SearchSpaceError(f"{source}: expected an object or a list of points, got {type(data).__name__}")


def load_search_space(path: str | Path) -> SearchSpace:
    """Read and validate a search space JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise SearchSpaceError(f"{path}: no such file") from e
    except json.JSONDecodeError as e:
        raise SearchSpaceError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
    return parse_search_space(data, str(path))


def make_hyperparameters(point: dict[str, Any] | None) -> Any:
    """AlgoPerf's hyperparameter object: a namedtuple with one field per name (or None)."""
    if point is None:
        return None
    fields = sorted(point)
    return collections.namedtuple("Hyperparameters", fields)(**{k: point[k] for k in fields})


def as_builtin(value: Any) -> Any:
    """numpy scalars to Python numbers, for JSON."""
    return value.item() if isinstance(value, np.generic) else value
