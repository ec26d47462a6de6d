"""AlgoPerf benchmark versions as data: every rule that differs between published leaderboards.

A :class:`BenchmarkVersion` is one named rule set: its targets (shipped in
``algoperf/scoring/benchmark_versions/``), held-out rule, studies and trials, how a
study's trial is chosen, area method and tau range; budgets per version are in
:data:`algoperf.scoring.targets.EXTERNAL_BUDGETS_SEC` and
:data:`~algoperf.scoring.targets.SELF_TUNING_FACTOR`. Where each rule comes from is in
``docs/scoring.md`` ("Benchmark versions"). Adding a version is adding an entry here,
its targets file and its budget row.

Which version a run uses (:func:`choose_version`): ``--benchmark-version``, else the
``benchmark_version`` of a ``--targets`` file, else what the logs say (held-out variants
that only v0.5 scores or workloads only later versions have; then folder names such as
``v05_self_tuning`` or ``algoperf_v06``), else the latest. The reason is reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from algoperf.scoring.errors import ScoringError
from algoperf.scoring.table import ALGOPERF_TAU_POINTS, TAU_MAX, ScoringOptions
from algoperf.scoring.targets import SELF_TUNING_FACTOR, Targets, load_targets, normalise_version

_DATA = Path(__file__).resolve().parent / "benchmark_versions"


@dataclass(frozen=True)
class BenchmarkVersion:
    """The scoring rules of one AlgoPerf benchmark version."""

    name: str  # "0.5"
    leaderboard: str  # the published leaderboard these rules reproduce
    targets_file: str  # in algoperf/scoring/benchmark_versions/
    heldout_rule: str  # "v0.5": a base workload also needs its sampled variant
    studies: int  # studies per workload
    trials: int  # trials per study under external tuning (self-tuning: one)
    trial_choice: str  # which trial of a study counts: "time" or "eval-index"
    area: str = "trapezoid"  # the published area: trapezoid rule on a tau grid
    tau_points: int = ALGOPERF_TAU_POINTS
    tau_max: float = TAU_MAX

    @property
    def self_tuning_factor(self) -> float:
        return SELF_TUNING_FACTOR[self.name]

    def targets(self) -> Targets:
        """The targets of this version, shipped with algoperf."""
        return _load(self.targets_file)

    def options(self, ruleset: str, **overrides: object) -> ScoringOptions:
        """:class:`ScoringOptions` of this version; ``overrides`` that are not None win."""
        base = {
            "ruleset": ruleset,
            "heldout_rule": self.heldout_rule,
            "area": self.area,
            "tau_points": self.tau_points,
            "tau_max": self.tau_max,
            "trial_choice": self.trial_choice,
            "benchmark_version": self.name,
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return ScoringOptions(**base)  # type: ignore[arg-type]

    def describe(self) -> str:
        """One line of the rules, for the command's report."""
        choice = {
            "time": "the trial with the least time to target",
            "eval-index": "the trial reaching the target at the earliest eval index",
        }[self.trial_choice]
        return (
            f"held-out rule {self.heldout_rule}, "
            f"{self.studies} studies x {self.trials} trials, per study {choice}, "
            f"{self.area} area on {self.tau_points} points of tau in [1, {self.tau_max:g}], "
            f"self-tuning budget {self.self_tuning_factor:g}x"
        )


@cache
def _load(name: str) -> Targets:
    targets = load_targets(_DATA / name)
    return Targets(
        workloads=targets.workloads,
        base_workloads=targets.base_workloads,
        held_out_workloads=targets.held_out_workloads,
        benchmark_version=targets.benchmark_version,
        source=f"the v{targets.benchmark_version} targets shipped with algoperf",
    )


VERSIONS: dict[str, BenchmarkVersion] = {
    "0.5": BenchmarkVersion(
        name="0.5",
        leaderboard="AlgoPerf v0.5 (the 2024 competition results)",
        targets_file="v0.5_targets.json",
        heldout_rule="v0.5",
        studies=5,
        trials=5,
        trial_choice="eval-index",
    ),
    "0.6": BenchmarkVersion(
        name="0.6",
        leaderboard="AlgoPerf v0.6 (the 2025 leaderboard)",
        targets_file="v0.6_targets.json",
        heldout_rule="v0.6",
        studies=3,
        trials=5,
        trial_choice="time",
    ),
}
LATEST = "0.6"


def get_version(name: str) -> BenchmarkVersion:
    """The version named ``name`` ("0.5", "v0.6", "0.6.0"); a clear error for others."""
    key = normalise_version(name)
    if key is None or key not in VERSIONS:
        raise ScoringError(
            f"--benchmark-version must be one of {', '.join(VERSIONS)}, not {name!r}"
        )
    return VERSIONS[key]


_FOLDER_VERSION = re.compile(r"(?<![a-z0-9])v0[._-]?(\d)(?![0-9])")


def _from_folders(paths: Sequence[Path]) -> dict[str, str]:
    """version -> the folder name saying it (the tree's or its parent's)."""
    found: dict[str, str] = {}
    for path in paths:
        for part in reversed(Path(path).resolve().parts[-2:]):
            m = _FOLDER_VERSION.search(part.lower())
            if m and f"0.{m[1]}" in VERSIONS:
                found.setdefault(f"0.{m[1]}", part)
                break
    return found


def _from_workloads(logged: Iterable[str]) -> tuple[str, str] | None:
    """(version, why) when the logged workload names belong to one version only."""
    logged = set(logged)
    held = sorted(logged & set(VERSIONS["0.5"].targets().held_out_workloads))
    if held:
        return "0.5", f"v0.5's held-out variants in the logs ({', '.join(held)})"
    v05 = VERSIONS["0.5"].targets()
    newer = sorted(
        logged
        & set(VERSIONS[LATEST].targets().base_workloads)
        - set(v05.base_workloads)
        - set(v05.held_out_workloads)
    )
    if newer:
        return LATEST, f"{', '.join(newer)} in the logs (base workloads since v{LATEST})"
    return None


def choose_version(
    flag: str | None,
    targets: Targets | None,
    tree_paths: Sequence[Path],
    logged: Iterable[str],
) -> tuple[BenchmarkVersion, str]:
    """The version to score with and why (see the module docstring for the order)."""
    if flag is not None:
        return get_version(flag), "--benchmark-version"
    if targets is not None:
        named = normalise_version(targets.benchmark_version)
        if named in VERSIONS:
            return VERSIONS[named], f"the benchmark_version of {targets.source}"
    by_workloads = _from_workloads(logged)
    folders = _from_folders(tree_paths)
    if by_workloads is not None:
        return VERSIONS[by_workloads[0]], by_workloads[1]
    if len(folders) > 1:
        named = ", ".join(f"{f!r} (v{v})" for v, f in folders.items())
        raise ScoringError(
            f"the logs' folders name different benchmark versions: {named}; score each in "
            "its own run or pass --benchmark-version"
        )
    if folders:
        ((version, folder),) = folders.items()
        return VERSIONS[version], f"the folder name {folder!r}"
    return VERSIONS[LATEST], "no version named by the logs, so the latest"


def default_targets(version: BenchmarkVersion, logged: Iterable[str]) -> Targets | None:
    """The version's shipped targets when every logged workload is one it scores, else None."""
    targets = version.targets()
    scored = set(targets.base_workloads) | set(targets.held_out_workloads)
    logged = set(logged)
    return targets if logged and logged <= scored else None
