"""``algoperf score``: benchmark scores of AlgoPerf-format logs, with uncertainty.

Inputs are log trees (``--logs``) and MLflow campaigns (``--experiment``, read with
:func:`algoperf.tracking.read_campaign`), in any mix; the scores of campaigns read from
MLflow are logged back onto them (:func:`algoperf.tracking.log_scores`).
Registered by the CLI as ``app.command("score")(score)``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from algoperf.scoring.bootstrap import LEVELS, bootstrap
from algoperf.scoring.errors import ScoringError
from algoperf.scoring.from_mlflow import log_scores_back, read_experiment
from algoperf.scoring.logs import TrialLog, infer_ruleset, read_logs
from algoperf.scoring.profile import AREAS, HELDOUT_RULES, TRIAL_CHOICES, build_table, score_table
from algoperf.scoring.report import RulesetReport, render, reports_to_json, write_outputs
from algoperf.scoring.targets import (
    RULESETS,
    Targets,
    load_targets,
    normalise_version,
    registry_targets,
)
from algoperf.scoring.versions import (
    BenchmarkVersion,
    choose_version,
    default_targets,
    get_version,
)

_PREFIXES = {
    "self": "self",
    "self_tuning": "self",
    "external": "external",
    "external_tuning": "external",
}


class _Warnings(list[str]):
    """Collects warnings and prints each to stderr as it comes."""

    def __call__(self, message: str) -> None:
        self.append(message)
        typer.echo(f"warning: {message}", err=True)


def _split_logs_arg(value: str) -> tuple[str | None, Path]:
    """``[RULESET:]DIR`` -> (ruleset or None, DIR)."""
    head, sep, tail = value.partition(":")
    if sep and head.lower() in _PREFIXES and tail:
        return _PREFIXES[head.lower()], Path(tail)
    return None, Path(value)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ScoringError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def score(
    logs: Annotated[
        list[str] | None,
        typer.Option(
            "--logs",
            help="Log tree: DIR/<submission>/study_<k>/<workload>_<jax|pytorch>/trial_<n>/"
            "eval_measurements.csv, or an experiment directory (no study level). Repeatable. "
            "Prefix self: or external: to set the tree's ruleset. --logs or --experiment "
            "(or both) is required.",
            show_default=False,
        ),
    ] = None,
    experiments: Annotated[
        list[str] | None,
        typer.Option(
            "--experiment",
            help="MLflow experiment (a campaign) to score from MLflow alone: its trial runs' "
            "metric histories. Repeatable; mixes with --logs. Each trial's ruleset tag "
            "decides its profile. The scores are logged back onto it as a 'score' run "
            "(see --no-log-back).",
            show_default=False,
        ),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri",
            help="MLflow store of --experiment (default: $MLFLOW_TRACKING_URI, else "
            "sqlite:///./mlflow.db).",
            show_default=False,
        ),
    ] = None,
    log_back: Annotated[
        bool,
        typer.Option(
            "--log-back/--no-log-back",
            help="After scoring --experiment campaigns, record on each a 'score' run "
            "(algoperf.kind=score: scores, intervals, times, options, CSV/JSON and profile "
            "plots), replacing the previous one, and tag its study runs with their score.",
        ),
    ] = True,
    targets: Annotated[
        Path | None,
        typer.Option(
            "--targets",
            help="Targets JSON in the format of AlgoPerf's workload_targets.json. "
            "Default: the algoperf workload registry.",
            show_default=False,
        ),
    ] = None,
    ruleset: Annotated[
        str | None,
        typer.Option(
            "--ruleset",
            help="external or self, for trees without a prefix. Default: from the folder name "
            "when it says self_tuning/external_tuning, else external. With --experiment: "
            "score only that ruleset's trials. Rulesets are never mixed in one profile.",
            show_default=False,
        ),
    ] = None,
    benchmark_version: Annotated[
        str | None,
        typer.Option(
            "--benchmark-version",
            help="AlgoPerf rules to score by: 0.5 or 0.6 (targets, held-out rule, studies and "
            "trials, trial choice, area, budgets). Default: the --targets file's "
            "benchmark_version, else what the logs say (v0.5's held-out variants, folder "
            "names such as v05_self_tuning), else 0.6; the choice and its reason are printed.",
            show_default=False,
        ),
    ] = None,
    heldout_rule: Annotated[
        str | None,
        typer.Option(
            "--heldout-rule",
            help="v0.6 (no held-out workloads) or v0.5 (a base workload also needs its "
            "held-out variant within budget and 4x of the best). Default: the version's.",
            show_default=False,
        ),
    ] = None,
    trial_choice: Annotated[
        str | None,
        typer.Option(
            "--trial-choice",
            help="Which trial of a study counts: time (least time to target, v0.6) or "
            "eval-index (reaches the target at the earliest eval, v0.5). Default: the "
            "version's.",
            show_default=False,
        ),
    ] = None,
    area: Annotated[
        str | None,
        typer.Option(
            "--area",
            help="trapezoid (AlgoPerf's published method: trapezoid rule on --tau-points "
            "points) or exact (area under the step profile). Default: the version's "
            "(trapezoid).",
            show_default=False,
        ),
    ] = None,
    tau_points: Annotated[
        int | None,
        typer.Option(
            "--tau-points",
            help="Points of the trapezoid tau grid on [1, 4]. Default: the version's (100).",
            show_default=False,
        ),
    ] = None,
    missing_as_miss: Annotated[
        bool,
        typer.Option(
            "--missing-as-miss",
            help="Count a base workload that has no logs at all as a miss for everyone. "
            "Default: leave it out, with a warning.",
        ),
    ] = False,
    workloads: Annotated[
        str | None,
        typer.Option(
            "--workloads",
            help="Comma-separated workloads to score instead of the targets' base workloads.",
            show_default=False,
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Stop with an error at anything the rules do not expect: stray entries in a "
            "log tree, trial folders with no, an empty or a malformed eval_measurements.csv, "
            "missing metric columns, other numbers of studies or trials than the version's. "
            "Default: skip or score them, with one warning per kind.",
        ),
    ] = False,
    budget_check: Annotated[
        bool,
        typer.Option(
            "--budget-check/--no-budget-check",
            help="A time to target over the workload's runtime budget is a miss.",
        ),
    ] = True,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            help="Submission to compute geometric-mean speedups against (misses count as "
            "budget + 1 s).",
            show_default=False,
        ),
    ] = None,
    n_bootstrap: Annotated[
        int,
        typer.Option("--bootstrap", help="Bootstrap replicates for intervals (0: none)."),
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    confidence: Annotated[
        float, typer.Option("--confidence", help="Level of the bootstrap intervals.")
    ] = 0.95,
    resample: Annotated[
        str,
        typer.Option(
            "--resample",
            help="Bootstrap unit: studies, or trials (studies, then trials within each).",
        ),
    ] = "studies",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help="Folder for scores.csv, times.csv, study_times.csv, order_flips.csv, "
            "scores.json and performance_profile_<ruleset>.png/.svg.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON on stdout, nothing else.")
    ] = False,
    digits: Annotated[int, typer.Option("--digits", help="Decimals of printed scores.")] = 4,
) -> None:
    """Score AlgoPerf-format logs or MLflow campaigns: profiles, benchmark scores, intervals.

    From MLflow (--experiment) the results go back onto each campaign unless --no-log-back.
    """
    warn = _Warnings()
    try:
        if not 0 <= digits <= 12:
            raise ScoringError(f"--digits must be between 0 and 12, not {digits}")
        scored = _run(
            logs=logs or [],
            experiments=experiments or [],
            tracking_uri=tracking_uri,
            targets_path=targets,
            default_ruleset=ruleset,
            version_flag=benchmark_version,
            options_kw={
                "heldout_rule": heldout_rule and _choice("--heldout-rule", heldout_rule, HELDOUT_RULES),
                "trial_choice": trial_choice
                and _choice("--trial-choice", trial_choice, TRIAL_CHOICES),
                "area": area and _choice("--area", area, AREAS),
                "tau_points": tau_points,
                "missing_as_miss": missing_as_miss,
                "workloads": tuple(w.strip() for w in workloads.split(",") if w.strip())
                if workloads
                else None,
                "budget_check": budget_check,
                "strict": strict,
            },
            baseline=baseline,
            n_bootstrap=n_bootstrap,
            seed=seed,
            confidence=confidence,
            resample=_choice("--resample", resample, LEVELS),
            warn=warn,
        )
        reports = scored.reports
        if output is not None:
            try:
                paths = write_outputs(reports, output, digits)
            except OSError as exc:
                raise ScoringError(f"cannot write to {output}: {exc.strerror or exc}") from None
    except ScoringError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None

    # Which rules were used, and why: on stderr beside --json, else above the tables.
    typer.echo(scored.version_note, err=as_json)
    if as_json:
        sys.stdout.write(reports_to_json(reports) + "\n")
        sys.stdout.flush()
        if output is not None:
            typer.echo(f"wrote {len(paths)} files to {output}", err=True)
    else:
        console = Console()
        if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
            console = Console(width=200)
        for rep in reports:
            render(rep, console, digits)
        if output is not None:
            console.print(f"wrote {', '.join(p.name for p in paths)} to {output}")
    if log_back and scored.campaigns:
        # After printing: a store failing now loses no result, it only misses the copy.
        log_scores_back(scored, digits, say=lambda m: typer.echo(m, err=as_json))


@dataclass
class _Scored:
    """What ``_run`` scored, and from where (for logging the scores back)."""

    reports: list[RulesetReport]
    tracking_uri: str | None = None
    campaigns: dict[str, set[str]] = field(default_factory=dict)  # experiment -> rulesets
    sources: dict[str, list[str]] = field(default_factory=dict)  # ruleset -> what was scored
    targets_source: str | None = None
    version_note: str = ""


def _check_numbers(version_flag: str | None, n_bootstrap: int, seed: int, confidence: float) -> None:
    """Option values checked before any reading, so a typo costs no time."""
    if version_flag is not None:
        get_version(version_flag)
    if n_bootstrap < 0:
        raise ScoringError("--bootstrap must be 0 (none) or a positive number of replicates")
    if seed < 0:
        raise ScoringError(f"--seed must be a non-negative integer, not {seed}")
    if not 0 < confidence < 1:
        raise ScoringError(f"--confidence must be between 0 and 1, not {confidence}")


def _rules(
    version_flag: str | None, targets_path: Path | None, tree_paths: list[Path], logged: set[str]
) -> tuple[BenchmarkVersion, str, Targets]:
    """The benchmark version, why it was chosen, and the targets to score against."""
    given = load_targets(targets_path) if targets_path is not None else None
    version, why = choose_version(version_flag, given, tree_paths, logged)
    targets = given or default_targets(version, logged) or registry_targets()
    if targets is None:
        targets = Targets(workloads={}, source="nowhere (the workload registry is unavailable)")
    return version, why, targets


def _run(
    *,
    logs: list[str],
    experiments: list[str],
    tracking_uri: str | None,
    targets_path: Path | None,
    default_ruleset: str | None,
    version_flag: str | None,
    options_kw: dict,
    baseline: str | None,
    n_bootstrap: int,
    seed: int,
    confidence: float,
    resample: str,
    warn: _Warnings,
) -> _Scored:
    if not logs and not experiments:
        raise ScoringError(
            "nothing to score: give a log tree with --logs DIR or an MLflow campaign with "
            "--experiment NAME (both repeatable, and they mix)"
        )
    if default_ruleset is not None:
        default_ruleset = _choice("--ruleset", default_ruleset, RULESETS)
    _check_numbers(version_flag, n_bootstrap, seed, confidence)

    scored = _Scored(reports=[])
    by_ruleset: dict[str, list[TrialLog]] = {}
    tree_paths: list[Path] = []
    origin: dict[tuple[str, str], str] = {}

    def add(rs: str, records: list[TrialLog], label: str) -> None:
        for sub in dict.fromkeys(r.submission for r in records):
            if (rs, sub) in origin:
                raise ScoringError(
                    f"submission {sub!r} is in both {origin[rs, sub]} and {label} "
                    f"({rs} tuning): score them in separate runs (or rename one folder)"
                )
            origin[rs, sub] = label
        by_ruleset.setdefault(rs, []).extend(records)
        scored.sources.setdefault(rs, []).append(label)

    for spec in logs:
        prefix, path = _split_logs_arg(spec)
        rs = prefix or default_ruleset or infer_ruleset(path)
        if rs is None:
            rs = "external"
        elif prefix is None and default_ruleset is None:
            warn(f"scoring {path} as {rs} tuning (from its folder name; --ruleset overrides)")
        add(rs, read_logs(path, rs, warn=warn, strict=options_kw["strict"]), str(path))
        tree_paths.append(path)

    if experiments:
        from algoperf.tracking import TrackingError, check_store, resolve_tracking_uri

        try:
            uri = resolve_tracking_uri(tracking_uri)
            check_store(uri)
        except TrackingError as exc:
            raise ScoringError(str(exc)) from None
        scored.tracking_uri = uri
        for name in dict.fromkeys(experiments):
            records = read_experiment(uri, name, default_ruleset, warn)
            rulesets = dict.fromkeys(r.ruleset for r in records)
            unknown = [rs for rs in rulesets if rs not in RULESETS]
            if unknown:
                raise ScoringError(
                    f"MLflow experiment {name!r} has trials of ruleset {unknown[0]!r} "
                    f"(tag algoperf.ruleset); scoring knows {', '.join(RULESETS)}: pass "
                    "--ruleset to score only one of those"
                )
            for rs in rulesets:
                add(rs, [r for r in records if r.ruleset == rs], f"MLflow experiment {name!r}")
            scored.campaigns[name] = set(rulesets)

    logged = {r.workload for records in by_ruleset.values() for r in records}
    version, why, targets = _rules(version_flag, targets_path, tree_paths, logged)
    # The study and trial counts are the version's when its published targets are used;
    # our own workloads (registry targets) run as many as the campaign says.
    published = normalise_version(targets.benchmark_version) == version.name
    counts = {"studies": version.studies, "trials": version.trials} if published else {}
    scored.version_note = (
        f"benchmark v{version.name} rules, from {why}"
        + ("" if why == "--benchmark-version" else " (--benchmark-version overrides)")
        + f": {version.describe()}; targets: {targets.source}"
    )
    scored.targets_source = targets.source
    reports = scored.reports
    for rs in RULESETS:
        if rs not in by_ruleset:
            continue
        options = version.options(rs, **counts, **options_kw)
        start = len(warn)
        table = build_table(by_ruleset[rs], targets, options, warn)
        result = score_table(table, options, baseline)
        boot = None
        if n_bootstrap > 0:
            boot = bootstrap(result, n_bootstrap, seed, confidence, resample)
        reports.append(
            RulesetReport(
                result=result,
                boot=boot,
                warnings=warn[start:],
                benchmark_version=version.name,
                version_reason=why,
            )
        )
    return scored
