"""Reference leaderboards shipped with the package: known training algorithms' logs on the small suite.

A leaderboard is a folder of AlgoPerf-format logs (``logs/<entry>/<workload>_jax/trial_<n>/``,
CSV and JSON only) produced by one documented campaign, plus the published full-scale scores
of the same entries. ``algoperf score --logs MINE --leaderboard NAME`` scores a user's logs
together with the reference entries (named ``<prefix>/<entry>``), so the user sees where their
submission would stand; ``algoperf leaderboard validity`` asks how well the small-suite ranking
predicts the published one (:mod:`algoperf.leaderboards.validity`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from algoperf.scoring.errors import ScoringError
from algoperf.scoring.logs import TrialLog, read_logs

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Leaderboard:
    """One shipped reference leaderboard."""

    name: str
    folder: Path
    prefix: str  # reference entries are scored as "<prefix>/<entry>"
    ruleset: str
    description: str
    # The AlgoPerf rules its shipped logs are scored by, wherever they are read from (the
    # folder name "small_suite_v05" names the entries' leaderboard, not v0.5's scoring rules).
    rules_version: str = "0.6"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    def published_scores(self) -> dict[str, float]:
        """Entry name -> the published full-scale benchmark score."""
        return dict(json.loads((self.folder / "published_scores.json").read_text())["scores"])

    def published_proxy(self) -> dict:
        """What AlgoPerf's own cheap proxy achieves against the same published ranking."""
        return dict(json.loads((self.folder / "published_scores.json").read_text()).get("proxy", {}))

    def entries(self) -> list[str]:
        """Entries with logs shipped (a campaign in progress ships fewer than published)."""
        if not self.logs.is_dir():
            return []
        return sorted(p.name for p in self.logs.iterdir() if p.is_dir())


LEADERBOARDS: dict[str, Leaderboard] = {
    "small-suite-v05": Leaderboard(
        name="small-suite-v05",
        folder=HERE / "small_suite_v05",
        prefix="v0.5",
        ruleset="external",
        description="the 11 AlgoPerf v0.5 external-tuning entries on the small suite (5 trials x 1 study, one CPU core each)",
    ),
}


def leaderboard_of_logs(path: Path) -> Leaderboard | None:
    """The shipped leaderboard whose logs ``path`` is (or lies inside), else None."""
    path = Path(path).resolve()
    for board in LEADERBOARDS.values():
        if path == board.logs.resolve() or board.logs.resolve() in path.parents:
            return board
    return None


def get_leaderboard(name: str) -> Leaderboard:
    try:
        return LEADERBOARDS[name]
    except KeyError:
        raise ScoringError(f"unknown leaderboard {name!r}; shipped: {', '.join(LEADERBOARDS)}") from None


def reference_records(board: Leaderboard, warn=None) -> list[TrialLog]:
    """The leaderboard's trial records, each entry renamed ``<prefix>/<entry>``."""
    if not board.entries():
        raise ScoringError(f"leaderboard {board.name} ships no logs yet ({board.logs} is empty)")
    records = read_logs(board.logs, board.ruleset, warn=warn)
    return [replace(r, submission=f"{board.prefix}/{r.submission}") for r in records]
