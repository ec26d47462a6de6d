"""The flags every scoring command shares: parsed and checked before any log is read.

``algoperf score`` and ``algoperf compare`` take the same sources (``--logs [RULESET:]DIR``,
``--experiment NAME``) and the same scoring rules; this module turns their values into a
:class:`ScoreRequest` for :func:`algoperf.scoring.pipeline.score_sources`, so a typo costs
no time and both commands answer it with the same message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from algoperf.scoring.bootstrap import LEVELS
from algoperf.scoring.errors import ScoringError
from algoperf.scoring.table import AREAS, HELDOUT_RULES, TRIAL_CHOICES
from algoperf.scoring.targets import RULESETS
from algoperf.scoring.versions import get_version

_PREFIXES = {
    "self": "self",
    "self_tuning": "self",
    "external": "external",
    "external_tuning": "external",
}


class Warnings(list[str]):
    """Collects warnings and prints each to stderr as it comes."""

    def __call__(self, message: str) -> None:
        self.append(message)
        typer.echo(f"warning: {message}", err=True)


def split_logs_arg(value: str) -> tuple[str | None, Path]:
    """``[RULESET:]DIR`` -> (ruleset or None, DIR)."""
    head, sep, tail = value.partition(":")
    if sep and head.lower() in _PREFIXES and tail:
        return _PREFIXES[head.lower()], Path(tail)
    return None, Path(value)


def choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``, else a :class:`ScoringError` naming them."""
    if value not in allowed:
        raise ScoringError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


@dataclass
class ScoreRequest:
    """What to score and by which rules: the checked values of the scoring flags."""

    logs: list[str] = field(default_factory=list)  # "[RULESET:]DIR"
    experiments: list[str] = field(default_factory=list)  # MLflow experiment names
    tracking_uri: str | None = None
    targets_path: Path | None = None
    default_ruleset: str | None = None
    version_flag: str | None = None
    options_kw: dict[str, Any] = field(default_factory=dict)  # ScoringOptions overrides
    baseline: str | None = None
    n_bootstrap: int = 1000
    seed: int = 0
    confidence: float = 0.95
    resample: str = "studies"
    leaderboard: str | None = None  # a shipped reference leaderboard scored alongside

    @property
    def strict(self) -> bool:
        return bool(self.options_kw.get("strict", False))


def rule_options(
    *,
    heldout_rule: str | None = None,
    trial_choice: str | None = None,
    area: str | None = None,
    tau_points: int | None = None,
    missing_as_miss: bool = False,
    workloads: str | None = None,
    budget_check: bool = True,
    strict: bool = False,
) -> dict[str, Any]:
    """The :class:`~algoperf.scoring.table.ScoringOptions` overrides the flags ask for."""
    return {
        "heldout_rule": heldout_rule and choice("--heldout-rule", heldout_rule, HELDOUT_RULES),
        "trial_choice": trial_choice and choice("--trial-choice", trial_choice, TRIAL_CHOICES),
        "area": area and choice("--area", area, AREAS),
        "tau_points": tau_points,
        "missing_as_miss": missing_as_miss,
        "workloads": tuple(w.strip() for w in workloads.split(",") if w.strip())
        if workloads
        else None,
        "budget_check": budget_check,
        "strict": strict,
    }


def check_request(request: ScoreRequest) -> None:
    """Raise :class:`ScoringError` for option values that cannot work (before any reading)."""
    if not request.logs and not request.experiments and request.leaderboard is None:
        raise ScoringError(
            "nothing to score: give a log tree with --logs DIR or an MLflow campaign with "
            "--experiment NAME (both repeatable, and they mix)"
        )
    if request.default_ruleset is not None:
        request.default_ruleset = choice("--ruleset", request.default_ruleset, RULESETS)
    if request.version_flag is not None:
        get_version(request.version_flag)
    if request.n_bootstrap < 0:
        raise ScoringError("--bootstrap must be 0 (none) or a positive number of replicates")
    if request.seed < 0:
        raise ScoringError(f"--seed must be a non-negative integer, not {request.seed}")
    if not 0 < request.confidence < 1:
        raise ScoringError(f"--confidence must be between 0 and 1, not {request.confidence}")
    choice("--resample", request.resample, LEVELS)
