"""Scoring: AlgoPerf benchmark scores of training logs, with bootstrap uncertainty.

Pipeline: a reader turns logs into :class:`TrialLog` records (:func:`read_logs` for
AlgoPerf-format trees, stray entries skipped with one warning per kind, and our
experiment directories); :func:`build_table` computes every trial's time to target
against :class:`Targets`; :func:`score_table` applies the AlgoPerf rules (one trial per
study, by time or by eval index; median over studies, 4x rule, optional v0.5 held-out
rule) and integrates the performance profiles; :func:`bootstrap` resamples studies for
intervals and order flips; :mod:`algoperf.scoring.report` prints and writes the results.
Each published leaderboard's rules are one :class:`BenchmarkVersion`
(:data:`VERSIONS`), chosen by :func:`choose_version`.
``algoperf score`` is :func:`algoperf.scoring.command.score` over :func:`algoperf.scoring.pipeline.score_sources`; ``algoperf compare`` is :mod:`algoperf.scoring.compare` (:mod:`algoperf.scoring.paired`); compute cost is :mod:`algoperf.scoring.cost`.
See ``docs/scoring.md`` and :mod:`algoperf.scoring.profile` for the maths.
"""

from algoperf.scoring.bootstrap import BootstrapResult, bootstrap, order_flips, rank_probabilities
from algoperf.scoring.cost import CampaignCost, CostOptions, campaign_cost
from algoperf.scoring.errors import ScoringError
from algoperf.scoring.files import write_outputs
from algoperf.scoring.logs import TrialLog, discover, read_logs, read_measurements
from algoperf.scoring.options import ScoreRequest
from algoperf.scoring.paired import PairResult, compare_pair, holm
from algoperf.scoring.pipeline import Scored, score_sources
from algoperf.scoring.profile import (
    ALGOPERF_TAU_POINTS,
    TAU_MAX,
    TRIAL_CHOICES,
    ScoreResult,
    ScoringOptions,
    TimeTable,
    apply_rules,
    build_table,
    exact_score,
    performance_ratios,
    profile,
    score_records,
    score_table,
    speedups,
    time_to_target,
    trapezoid_score,
    workload_times,
)
from algoperf.scoring.report import RulesetReport, report_to_dict, reports_to_json
from algoperf.scoring.targets import (
    EXTERNAL_BUDGETS_SEC,
    SELF_TUNING_FACTOR,
    Targets,
    WorkloadTarget,
    higher_is_better,
    load_targets,
    registry_targets,
    runtime_budget,
    targets_from_dict,
)
from algoperf.scoring.tree import ReadIssues, discover_trials
from algoperf.scoring.versions import VERSIONS, BenchmarkVersion, choose_version, get_version

__all__ = [
    "ALGOPERF_TAU_POINTS",
    "EXTERNAL_BUDGETS_SEC",
    "SELF_TUNING_FACTOR",
    "TAU_MAX",
    "TRIAL_CHOICES",
    "VERSIONS",
    "BenchmarkVersion",
    "BootstrapResult",
    "CampaignCost",
    "CostOptions",
    "PairResult",
    "ScoreRequest",
    "Scored",
    "ReadIssues",
    "RulesetReport",
    "ScoreResult",
    "ScoringError",
    "ScoringOptions",
    "Targets",
    "TimeTable",
    "TrialLog",
    "WorkloadTarget",
    "apply_rules",
    "bootstrap",
    "campaign_cost",
    "compare_pair",
    "holm",
    "rank_probabilities",
    "score_sources",
    "build_table",
    "choose_version",
    "discover",
    "discover_trials",
    "exact_score",
    "get_version",
    "higher_is_better",
    "load_targets",
    "order_flips",
    "performance_ratios",
    "profile",
    "read_logs",
    "read_measurements",
    "registry_targets",
    "report_to_dict",
    "reports_to_json",
    "runtime_budget",
    "score_records",
    "score_table",
    "targets_from_dict",
    "speedups",
    "time_to_target",
    "trapezoid_score",
    "workload_times",
    "write_outputs",
]
