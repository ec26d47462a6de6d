"""``algoperf score``: benchmark scores of AlgoPerf-format logs, with uncertainty and cost.

Inputs are log trees (``--logs``), MLflow campaigns (``--experiment``, read with
:func:`algoperf.tracking.read_campaign`) and a shipped reference leaderboard
(``--leaderboard``), in any mix; the scoring is :func:`algoperf.scoring.pipeline.score_sources`.
The scores of campaigns read from MLflow are logged back onto them
(:func:`algoperf.tracking.log_scores`). Registered by the CLI as ``app.command("score")(score)``.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from algoperf.scoring.cost import CostOptions, parse_prices
from algoperf.scoring.errors import ScoringError
from algoperf.scoring.files import write_outputs
from algoperf.scoring.flags import (
    AreaOpt,
    AsJsonOpt,
    BaselineOpt,
    BenchmarkVersionOpt,
    BudgetCheckOpt,
    ConfidenceOpt,
    DevicesOpt,
    DigitsOpt,
    ExperimentsOpt,
    HeldoutRuleOpt,
    LeaderboardOpt,
    LogBackOpt,
    LogsOpt,
    MissingAsMissOpt,
    NBootstrapOpt,
    OutputOpt,
    PriceOpt,
    ResampleOpt,
    RulesetOpt,
    SeedOpt,
    StrictOpt,
    TargetsOpt,
    TauPointsOpt,
    TrackingUriOpt,
    TrialChoiceOpt,
    WorkloadsOpt,
)
from algoperf.scoring.from_mlflow import log_scores_back
from algoperf.scoring.options import ScoreRequest, Warnings, rule_options
from algoperf.scoring.pipeline import Scored, score_sources
from algoperf.scoring.report import render, reports_to_json


def cost_options(devices: int | None, prices: list[str] | None) -> CostOptions:
    """``--devices`` and ``--price`` checked."""
    if devices is not None and devices < 1:
        raise ScoringError(f"--devices must be a positive number of devices, not {devices}")
    return CostOptions(devices=devices, prices=parse_prices(prices or []))


def console_for_tables() -> Console:
    """The terminal, or a wide console when piped (a table is not squeezed into 80 columns)."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def score(
    logs: LogsOpt = None,
    experiments: ExperimentsOpt = None,
    leaderboard: LeaderboardOpt = None,
    tracking_uri: TrackingUriOpt = None,
    log_back: LogBackOpt = True,
    targets: TargetsOpt = None,
    ruleset: RulesetOpt = None,
    benchmark_version: BenchmarkVersionOpt = None,
    heldout_rule: HeldoutRuleOpt = None,
    trial_choice: TrialChoiceOpt = None,
    area: AreaOpt = None,
    tau_points: TauPointsOpt = None,
    missing_as_miss: MissingAsMissOpt = False,
    workloads: WorkloadsOpt = None,
    strict: StrictOpt = False,
    budget_check: BudgetCheckOpt = True,
    baseline: BaselineOpt = None,
    n_bootstrap: NBootstrapOpt = 1000,
    seed: SeedOpt = 0,
    confidence: ConfidenceOpt = 0.95,
    resample: ResampleOpt = None,
    devices: DevicesOpt = None,
    price: PriceOpt = None,
    output: OutputOpt = None,
    as_json: AsJsonOpt = False,
    digits: DigitsOpt = 4,
) -> None:
    """Score AlgoPerf-format logs or MLflow campaigns: profiles, scores, intervals, rank
    probabilities and compute cost.

    From MLflow (--experiment) the results go back onto each campaign unless --no-log-back.
    """
    warn = Warnings()
    try:
        if not 0 <= digits <= 12:
            raise ScoringError(f"--digits must be between 0 and 12, not {digits}")
        request = ScoreRequest(
            logs=logs or [],
            experiments=experiments or [],
            tracking_uri=tracking_uri,
            targets_path=targets,
            default_ruleset=ruleset,
            version_flag=benchmark_version,
            options_kw=rule_options(
                heldout_rule=heldout_rule,
                trial_choice=trial_choice,
                area=area,
                tau_points=tau_points,
                missing_as_miss=missing_as_miss,
                workloads=workloads,
                budget_check=budget_check,
                strict=strict,
            ),
            baseline=baseline,
            n_bootstrap=n_bootstrap,
            seed=seed,
            confidence=confidence,
            resample=resample or ("trials" if leaderboard else "studies"),
            leaderboard=leaderboard,
        )
        scored = score_sources(request, warn, cost_options(devices, price))
        paths = []
        if output is not None:
            try:
                paths = write_outputs(scored.reports, output, digits)
            except OSError as exc:
                raise ScoringError(f"cannot write to {output}: {exc.strerror or exc}") from None
    except ScoringError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    _show(scored, paths, output, as_json, digits)
    if log_back and scored.campaigns:
        # After printing: a store failing now loses no result, it only misses the copy.
        log_scores_back(scored, digits, say=lambda m: typer.echo(m, err=as_json))


def _show(scored: Scored, paths: list, output, as_json: bool, digits: int) -> None:
    # Which rules were used, and why: on stderr beside --json, else above the tables.
    typer.echo(scored.version_note, err=as_json)
    if as_json:
        sys.stdout.write(reports_to_json(scored.reports) + "\n")
        sys.stdout.flush()
        if output is not None:
            typer.echo(f"wrote {len(paths)} files to {output}", err=True)
        return
    console = console_for_tables()
    for rep in scored.reports:
        render(rep, console, digits)
    if output is not None:
        console.print(f"wrote {', '.join(p.name for p in paths)} to {output}")
