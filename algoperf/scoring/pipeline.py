"""From sources to scores: the one path every scoring command takes.

:func:`score_sources` reads every source of a :class:`~algoperf.scoring.options.ScoreRequest`
(log trees, MLflow campaigns, a shipped reference leaderboard) into
:class:`~algoperf.scoring.logs.TrialLog` records (:func:`collect`), chooses the benchmark
version and targets, and scores each ruleset separately (:func:`score_collected`): point
scores, the bootstrap (intervals, order flips, rank probabilities) and compute cost.
``algoperf score`` prints and writes the result; ``algoperf compare`` runs its paired
tests on the same tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from algoperf.scoring.bootstrap import bootstrap
from algoperf.scoring.cost import CostOptions, campaign_cost
from algoperf.scoring.errors import ScoringError
from algoperf.scoring.from_mlflow import read_experiment
from algoperf.scoring.logs import TrialLog, infer_ruleset, read_logs
from algoperf.scoring.options import ScoreRequest, Warnings, check_request, split_logs_arg
from algoperf.scoring.profile import build_table, score_table
from algoperf.scoring.report import RulesetReport
from algoperf.scoring.targets import (
    RULESETS,
    Targets,
    load_targets,
    normalise_version,
    registry_targets,
)
from algoperf.scoring.versions import BenchmarkVersion, choose_version, default_targets, get_version


@dataclass
class Collected:
    """Every record read, by ruleset, and where each submission came from."""

    by_ruleset: dict[str, list[TrialLog]] = field(default_factory=dict)
    origin: dict[tuple[str, str], str] = field(default_factory=dict)  # (ruleset, sub) -> source
    tree_paths: list[Path] = field(default_factory=list)
    sources: dict[str, list[str]] = field(default_factory=dict)  # ruleset -> what was scored
    campaigns: dict[str, set[str]] = field(default_factory=dict)  # experiment -> rulesets
    tracking_uri: str | None = None
    rules_version: tuple[str, str] | None = None  # (version, why) a leaderboard imposes

    def add(self, ruleset: str, records: list[TrialLog], label: str) -> None:
        """Add one source's records; a submission in two sources of a ruleset is an error."""
        for sub in dict.fromkeys(r.submission for r in records):
            if (ruleset, sub) in self.origin:
                raise ScoringError(
                    f"submission {sub!r} is in both {self.origin[ruleset, sub]} and {label} "
                    f"({ruleset} tuning): score them in separate runs (or rename one folder)"
                )
            self.origin[ruleset, sub] = label
        self.by_ruleset.setdefault(ruleset, []).extend(records)
        self.sources.setdefault(ruleset, []).append(label)


@dataclass
class Scored:
    """What :func:`score_sources` scored, and from where (for logging the scores back)."""

    reports: list[RulesetReport]
    tracking_uri: str | None = None
    campaigns: dict[str, set[str]] = field(default_factory=dict)  # experiment -> rulesets
    sources: dict[str, list[str]] = field(default_factory=dict)  # ruleset -> what was scored
    targets_source: str | None = None
    version_note: str = ""
    collected: Collected | None = None


def _read_tree(spec: str, request: ScoreRequest, out: Collected, warn: Callable[[str], None]) -> str:
    prefix, path = split_logs_arg(spec)
    rs = prefix or request.default_ruleset or infer_ruleset(path)
    if rs is None:
        rs = "external"
    elif prefix is None and request.default_ruleset is None:
        warn(f"scoring {path} as {rs} tuning (from its folder name; --ruleset overrides)")
    out.add(rs, read_logs(path, rs, warn=warn, strict=request.strict), str(path))
    out.tree_paths.append(path)
    from algoperf.leaderboards import leaderboard_of_logs

    board = leaderboard_of_logs(path)
    if board is not None:  # the shipped logs score as the validity report scores them
        out.rules_version = (board.rules_version, f"{path} holds leaderboard {board.name}'s logs")
    return str(path)


def _read_experiments(request: ScoreRequest, out: Collected, warn: Callable[[str], None]) -> None:
    from algoperf.tracking import TrackingError, check_store, resolve_tracking_uri

    try:
        uri = resolve_tracking_uri(request.tracking_uri)
        check_store(uri)
    except TrackingError as exc:
        raise ScoringError(str(exc)) from None
    out.tracking_uri = uri
    for name in dict.fromkeys(request.experiments):
        records = read_experiment(uri, name, request.default_ruleset, warn)
        rulesets = dict.fromkeys(r.ruleset for r in records)
        unknown = [rs for rs in rulesets if rs not in RULESETS]
        if unknown:
            raise ScoringError(
                f"MLflow experiment {name!r} has trials of ruleset {unknown[0]!r} "
                f"(tag algoperf.ruleset); scoring knows {', '.join(RULESETS)}: pass "
                "--ruleset to score only one of those"
            )
        for rs in rulesets:
            out.add(rs, [r for r in records if r.ruleset == rs], experiment_label(name))
        out.campaigns[name] = set(rulesets)


def experiment_label(name: str) -> str:
    """How an MLflow experiment is named as a source."""
    return f"MLflow experiment {name!r}"


def _read_leaderboard(request: ScoreRequest, out: Collected, warn: Callable[[str], None]) -> None:
    """The shipped reference entries, under the leaderboard's ruleset and rules."""
    from algoperf.leaderboards import get_leaderboard, reference_records

    board = get_leaderboard(request.leaderboard or "")
    out.add(board.ruleset, reference_records(board, warn), f"leaderboard {board.name}")
    out.rules_version = (board.rules_version, f"the rules leaderboard {board.name} is scored by")


def collect(request: ScoreRequest, warn: Callable[[str], None]) -> Collected:
    """Read every source of ``request`` into records (checks the request first)."""
    check_request(request)
    out = Collected()
    if request.leaderboard is not None:
        from algoperf.leaderboards import get_leaderboard

        board = get_leaderboard(request.leaderboard)
        if request.default_ruleset is None:  # the user's logs join the board's profile
            request.default_ruleset = board.ruleset
    for spec in request.logs:
        _read_tree(spec, request, out, warn)
    if request.experiments:
        _read_experiments(request, out, warn)
    if request.leaderboard is not None:
        _read_leaderboard(request, out, warn)
    return out


def _rules(
    request: ScoreRequest, collected: Collected, logged: set[str]
) -> tuple[BenchmarkVersion, str, Targets]:
    """The benchmark version, why it was chosen, and the targets to score against."""
    given = load_targets(request.targets_path) if request.targets_path is not None else None
    if request.version_flag is None and given is None and collected.rules_version is not None:
        version, why = get_version(collected.rules_version[0]), collected.rules_version[1]
    else:
        version, why = choose_version(request.version_flag, given, collected.tree_paths, logged)
    targets = given or default_targets(version, logged) or registry_targets()
    if targets is None:
        targets = Targets(workloads={}, source="nowhere (the workload registry is unavailable)")
    return version, why, targets


def score_collected(
    collected: Collected,
    request: ScoreRequest,
    warn: Warnings,
    cost: CostOptions | None = None,
) -> Scored:
    """Score each ruleset of ``collected`` (never mixed): point scores, bootstrap, cost."""
    logged = {r.workload for records in collected.by_ruleset.values() for r in records}
    version, why, targets = _rules(request, collected, logged)
    # The study and trial counts are the version's when its published targets are used;
    # our own workloads (registry targets) run as many as the campaign says.
    published = normalise_version(targets.benchmark_version) == version.name
    counts = {"studies": version.studies, "trials": version.trials} if published else {}
    flagged = why == "--benchmark-version"
    scored = Scored(
        reports=[],
        tracking_uri=collected.tracking_uri,
        campaigns=collected.campaigns,
        sources=collected.sources,
        targets_source=targets.source,
        version_note=f"benchmark v{version.name} rules, from {why}"
        + ("" if flagged else " (--benchmark-version overrides)")
        + f": {version.describe()}; targets: {targets.source}",
        collected=collected,
    )
    for rs in RULESETS:
        if rs not in collected.by_ruleset:
            continue
        options = version.options(rs, **counts, **request.options_kw)
        start = len(warn)
        table = build_table(collected.by_ruleset[rs], targets, options, warn)
        result = score_table(table, options, request.baseline)
        boot = None
        if request.n_bootstrap > 0:
            boot = bootstrap(
                result, request.n_bootstrap, request.seed, request.confidence, request.resample
            )
        scored.reports.append(
            RulesetReport(
                result=result,
                boot=boot,
                warnings=list(warn[start:]),
                benchmark_version=version.name,
                version_reason=why,
                cost=campaign_cost(collected.by_ruleset[rs], table, result, cost or CostOptions()),
            )
        )
    return scored


def score_sources(
    request: ScoreRequest, warn: Warnings, cost: CostOptions | None = None
) -> Scored:
    """Read and score every source of ``request`` (see the module docstring)."""
    return score_collected(collect(request, warn), request, warn, cost)
