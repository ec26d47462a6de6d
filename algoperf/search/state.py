"""The search's state, checkpointed after every generation in ``<search>/state.json``.

It holds the settings the search started with, the generation reached, the random
generator's state, every candidate seen (program, parent, origin, status, times,
fitness), the population (oldest first) and the best fitness over time. Writing is atomic
(a temporary file renamed over the old one), so a driver killed at any moment leaves the
last finished generation; re-running the command starts the next one from there.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"

# A candidate's status: seed (a reference), rejected (static check), duplicate (hash seen),
# pruned (failed the funnel's first stage), evaluated (ran on every workload).
STATUSES = ("seed", "rejected", "duplicate", "pruned", "evaluated")


@dataclass
class SearchState:
    settings: dict[str, Any]
    generation: int = 0
    rng_state: Any = None
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    population: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    proposer_state: dict[str, Any] = field(default_factory=dict)

    def rng(self) -> random.Random:
        rng = random.Random(self.settings.get("seed", 0))
        if self.rng_state is not None:
            version, internal, gauss = self.rng_state
            rng.setstate((version, tuple(internal), gauss))
        return rng

    def keep_rng(self, rng: random.Random) -> None:
        self.rng_state = list(rng.getstate())

    def count(self, status: str, n: int = 1) -> None:
        self.counts[status] = self.counts.get(status, 0) + n

    def save(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, root / STATE_FILE)


def load_state(root: Path) -> SearchState | None:
    path = root / STATE_FILE
    if not path.exists():
        return None
    return SearchState(**json.loads(path.read_text()))
