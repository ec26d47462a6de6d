"""The flags of the scoring commands, declared once (``algoperf score`` and ``algoperf compare``).

Each alias is a typer parameter type; a command declares ``name: XOpt = default``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

LogsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--logs",
        help="Log tree: DIR/<submission>/study_<k>/<workload>_<jax|pytorch>/trial_<n>/"
        "eval_measurements.csv, or an experiment directory (no study level). Repeatable. "
        "Prefix self: or external: to set the tree's ruleset. --logs or --experiment "
        "(or both) is required.",
        show_default=False,
    ),
]

ExperimentsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--experiment",
        help="MLflow experiment (a campaign) to score from MLflow alone: its trial runs' "
        "metric histories. Repeatable; mixes with --logs. Each trial's ruleset tag "
        "decides its profile. The scores are logged back onto it as a 'score' run "
        "(see --no-log-back).",
        show_default=False,
    ),
]

TrackingUriOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow store of --experiment (default: $MLFLOW_TRACKING_URI, else "
        "sqlite:///./mlflow.db).",
        show_default=False,
    ),
]

LogBackOpt = Annotated[
    bool,
    typer.Option(
        "--log-back/--no-log-back",
        help="After scoring --experiment campaigns, record on each a 'score' run "
        "(algoperf.kind=score: scores, intervals, times, options, CSV/JSON and profile "
        "plots), replacing the previous one, and tag its study runs with their score.",
    ),
]

TargetsOpt = Annotated[
    Path | None,
    typer.Option(
        "--targets",
        help="Targets JSON in the format of AlgoPerf's workload_targets.json. "
        "Default: the algoperf workload registry.",
        show_default=False,
    ),
]

RulesetOpt = Annotated[
    str | None,
    typer.Option(
        "--ruleset",
        help="external or self, for trees without a prefix. Default: from the folder name "
        "when it says self_tuning/external_tuning, else external. With --experiment: "
        "score only that ruleset's trials. Rulesets are never mixed in one profile.",
        show_default=False,
    ),
]

BenchmarkVersionOpt = Annotated[
    str | None,
    typer.Option(
        "--benchmark-version",
        help="AlgoPerf rules to score by: 0.5 or 0.6 (targets, held-out rule, studies and "
        "trials, trial choice, area, budgets). Default: the --targets file's "
        "benchmark_version, else what the logs say (v0.5's held-out variants, folder "
        "names such as v05_self_tuning), else 0.6; the choice and its reason are printed.",
        show_default=False,
    ),
]

HeldoutRuleOpt = Annotated[
    str | None,
    typer.Option(
        "--heldout-rule",
        help="v0.6 (no held-out workloads) or v0.5 (a base workload also needs its "
        "held-out variant within budget and 4x of the best). Default: the version's.",
        show_default=False,
    ),
]

TrialChoiceOpt = Annotated[
    str | None,
    typer.Option(
        "--trial-choice",
        help="Which trial of a study counts: time (least time to target, v0.6) or "
        "eval-index (reaches the target at the earliest eval, v0.5). Default: the "
        "version's.",
        show_default=False,
    ),
]

AreaOpt = Annotated[
    str | None,
    typer.Option(
        "--area",
        help="trapezoid (AlgoPerf's published method: trapezoid rule on --tau-points "
        "points) or exact (area under the step profile). Default: the version's "
        "(trapezoid).",
        show_default=False,
    ),
]

TauPointsOpt = Annotated[
    int | None,
    typer.Option(
        "--tau-points",
        help="Points of the trapezoid tau grid on [1, 4]. Default: the version's (100).",
        show_default=False,
    ),
]

MissingAsMissOpt = Annotated[
    bool,
    typer.Option(
        "--missing-as-miss",
        help="Count a base workload that has no logs at all as a miss for everyone. "
        "Default: leave it out, with a warning.",
    ),
]

WorkloadsOpt = Annotated[
    str | None,
    typer.Option(
        "--workloads",
        help="Comma-separated workloads to score instead of the targets' base workloads.",
        show_default=False,
    ),
]

StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Stop with an error at anything the rules do not expect: stray entries in a "
        "log tree, trial folders with no, an empty or a malformed eval_measurements.csv, "
        "missing metric columns, other numbers of studies or trials than the version's. "
        "Default: skip or score them, with one warning per kind.",
    ),
]

BudgetCheckOpt = Annotated[
    bool,
    typer.Option(
        "--budget-check/--no-budget-check",
        help="A time to target over the workload's runtime budget is a miss.",
    ),
]

BaselineOpt = Annotated[
    str | None,
    typer.Option(
        "--baseline",
        help="Submission to compute geometric-mean speedups against (misses count as "
        "budget + 1 s).",
        show_default=False,
    ),
]

NBootstrapOpt = Annotated[
    int,
    typer.Option("--bootstrap", help="Bootstrap replicates for intervals (0: none)."),
]

SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")]

ConfidenceOpt = Annotated[
    float, typer.Option("--confidence", help="Level of the bootstrap intervals.")
]

ResampleOpt = Annotated[
    str | None,
    typer.Option(
        "--resample",
        help="Bootstrap unit: studies, or trials (studies, then trials within each). "
        "Default: studies; with --leaderboard trials (its entries ran one study each).",
        show_default=False,
    ),
]

OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output",
        help="Folder for scores.csv, times.csv, study_times.csv, order_flips.csv, "
        "cost.csv, scores.json and performance_profile_<ruleset>.png/.svg.",
        show_default=False,
    ),
]

AsJsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the results as JSON on stdout, nothing else.")
]

DigitsOpt = Annotated[int, typer.Option("--digits", help="Decimals of printed scores.")]

LeaderboardOpt = Annotated[
    str | None,
    typer.Option(
        "--leaderboard",
        help="A shipped reference leaderboard (small-suite-v05) to score your --logs "
        "against: its entries (named v0.5/<entry>) join the profile under the board's "
        "ruleset and rules, so your submission gets its rank, interval and P(1st) among them.",
        show_default=False,
    ),
]

DevicesOpt = Annotated[
    int | None,
    typer.Option(
        "--devices",
        help="Devices per trial where a trial's meta_data_*.json records no count (AlgoPerf's "
        "published logs: 8). Default: 1, with a warning.",
        show_default=False,
    ),
]

PriceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--price",
        help="DEVICE=USD_PER_HOUR (device kind as meta_data_*.json records it, e.g. cpu, "
        "'NVIDIA H100 80GB HBM3'), or USD_PER_HOUR for every device: turns device-hours "
        "into money. Repeatable.",
        show_default=False,
    ),
]
