"""`algoperf targets WORKLOAD`: set a workload's targets and budget by a stated procedure.

AlgoPerf's procedure, at small scale:

1. Search. For each target-setting optimizer (AdamW, NAdamW, SGD with Nesterov momentum,
   heavy-ball; the ones installed), run ``trials`` quasi-random points of its search
   space for ``step_hint`` steps with the targets switched off, and keep each trial's
   best validation metric.
2. Rerun the best (optimizer, point) ``reruns`` times with other seeds.
3. Validation target = the median over reruns of their best validation metric.
   Test target = the worst test metric among the reruns that reach the validation
   target (each rerun's test metric at its best validation eval).
4. Budget = 4/3 x the median submission time at which those reruns first reached the
   validation target; step hint = 4/3 x the median step at which they did.

A variant keeps its base workload's budget and step hint, as AlgoPerf's variants do
(``budget`` given: the base's ``max_allowed_runtime_sec``). Then every trial's metric is
its best validation within that budget of submission time, so the variant's targets are
what the procedure reaches in the time a submission gets.

The output (every trial and the derived numbers) is written as JSON and Markdown, so the
numbers in a workload's class can be traced to a run anyone can repeat.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from algoperf import registry, spec
from algoperf.campaign.plan import trial_seed
from algoperf.runner.trial import run_trial
from algoperf.runner.trial_log import EVAL_FILE, read_evals
from algoperf.runner.types import TrialConfig
from algoperf.submission.loading import load_submission

TARGET_SETTING_OPTIMIZERS = ("adamw", "nadamw", "sgd_nesterov", "heavy_ball")


def untargeted(cls: type[spec.Workload], steps: int) -> type[spec.Workload]:
    """``cls`` with unreachable targets, no time limit and a step hint of ``steps``.

    Trials then run exactly ``steps`` steps, and schedules that end at the step hint end there.
    """
    higher = spec.higher_is_better(cls.target_metric_name)
    unreachable = math.inf if higher else -math.inf
    return type(f"{cls.__name__}Untargeted", (cls,), {
        "validation_target_value": unreachable,
        "test_target_value": unreachable,
        "max_allowed_runtime_sec": math.inf,
        "step_hint": steps,
        # Batch sizes and the like are looked up under the real workload's name.
        "base_workload": cls.base_workload or cls.name,
    })


@dataclass
class TrialSummary:
    optimizer: str
    hyperparameters: dict[str, Any]
    seed: int
    best_validation: float | None
    test_at_best: float | None
    evals: list[dict[str, float]] = field(repr=False, default_factory=list)


def _summarise(optimizer: str, config: TrialConfig, metric: str, budget: float | None = None) -> TrialSummary:
    evals = read_evals(config.path) if (config.path / EVAL_FILE).exists() else []
    rows = [r for r in evals if not math.isnan(r.get(f"validation/{metric}", math.nan))
            and (budget is None or r["accumulated_submission_time"] <= budget)]
    best_row = None
    if rows:
        pick = max if spec.higher_is_better(metric) else min
        best_row = pick(rows, key=lambda r: r[f"validation/{metric}"])
    return TrialSummary(
        optimizer=optimizer,
        hyperparameters=config.hyperparameters or {},
        seed=config.seed,
        best_validation=best_row[f"validation/{metric}"] if best_row else None,
        test_at_best=best_row.get(f"test/{metric}") if best_row else None,
        evals=rows,
    )


def _first_reach(evals: list[dict[str, float]], metric: str, target: float) -> dict[str, float] | None:
    key = f"validation/{metric}"
    for row in evals:
        if (row[key] >= target) if spec.higher_is_better(metric) else (row[key] <= target):
            return row
    return None


def set_targets(
    workload: str,
    experiment_dir: Path,
    optimizers: tuple[str, ...] = TARGET_SETTING_OPTIMIZERS,
    trials: int = 4,
    reruns: int = 5,
    seed: int = 0,
    steps: int | None = None,
    log: Any = print,
    budget: float | None = None,
) -> dict[str, Any]:
    """Run the procedure for ``workload``; return every trial and the derived targets.

    ``budget``: keep this budget (a variant: its base's) and take each trial's best
    validation metric within it; the step hint stays the workload's.
    """
    cls = registry.get_workload_class(workload)
    metric = cls.target_metric_name
    steps = steps or cls.step_hint
    internal = f"{workload}__untargeted"
    registry.register_workload(internal, untargeted(cls, steps))
    available = [o for o in optimizers if o in registry.submission_names()]
    if not available:
        raise ValueError(f"none of the target-setting optimizers {', '.join(optimizers)} is installed")

    def run(optimizer: str, point: dict[str, Any], trial_seed_: int, name: str) -> TrialSummary:
        config = TrialConfig(workload=internal, submission=optimizer, hyperparameters=point, seed=trial_seed_,
                             experiment_dir=experiment_dir, experiment_name=name, max_steps=steps)
        result = run_trial(config)
        summary = _summarise(optimizer, config, metric, budget)
        log(f"  {optimizer} seed {trial_seed_}: {result.status}, best validation/{metric} = {summary.best_validation}"
            + (f" ({result.error.splitlines()[0]})" if result.error else ""))
        return summary

    search: list[TrialSummary] = []
    for optimizer in available:
        submission = load_submission(optimizer)
        space = submission.search_space
        points = space.points(trials, seed=seed) if space else [{}]
        for i, point in enumerate(points):
            search.append(run(optimizer, point, trial_seed(seed, 0, i), f"search_{optimizer}_{i + 1}"))
    scored = [s for s in search if s.best_validation is not None]
    if not scored:
        raise RuntimeError(f"no search trial on {workload} produced a validation metric")
    pick = max if spec.higher_is_better(metric) else min
    best = pick(scored, key=lambda s: s.best_validation)
    log(f"best: {best.optimizer} {best.hyperparameters}")
    again = [run(best.optimizer, best.hyperparameters, trial_seed(seed, 1, r), f"rerun_{r + 1}") for r in range(reruns)]
    bests = [s.best_validation for s in again if s.best_validation is not None]
    validation_target = statistics.median(bests)
    hits = [(s, _first_reach(s.evals, metric, validation_target)) for s in again]
    hits = [(s, row) for s, row in hits if row is not None]
    worst = min if spec.higher_is_better(metric) else max
    test_target = worst(s.test_at_best for s, _ in hits if s.test_at_best is not None)
    time_to_target = statistics.median(row["accumulated_submission_time"] for _, row in hits)
    step_to_target = statistics.median(row["global_step"] for _, row in hits)
    return {
        "workload": workload,
        "procedure": __doc__.strip().split("\n\n", 1)[1],
        "settings": {"optimizers": available, "trials": trials, "reruns": reruns, "seed": seed, "steps": steps,
                     "budget": budget},
        "search": [_public(s) for s in search],
        "best": {"optimizer": best.optimizer, "hyperparameters": best.hyperparameters},
        "reruns": [_public(s) for s in again],
        "result": {
            "target_metric_name": metric,
            "validation_target_value": validation_target,
            "test_target_value": test_target,
            "median_time_to_target_sec": time_to_target,
            "max_allowed_runtime_sec": budget if budget is not None else 4 / 3 * time_to_target,
            "step_hint": steps if budget is not None else round(4 / 3 * step_to_target),
        },
    }


def _public(s: TrialSummary) -> dict[str, Any]:
    return {"optimizer": s.optimizer, "hyperparameters": s.hyperparameters, "seed": s.seed,
            "best_validation": s.best_validation, "test_at_best": s.test_at_best}


def write_report(report: dict[str, Any], output: Path) -> tuple[Path, Path]:
    """Write ``<workload>.json`` and ``<workload>.md`` into ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    name = report["workload"]
    json_path, md_path = output / f"{name}.json", output / f"{name}.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    r = report["result"]
    lines = [
        f"# Targets of `{name}`", "", "Made by `algoperf targets " + name + "`.", "", report["procedure"], "",
        "| setting | value |", "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in report["settings"].items()), "",
        f"Best: `{report['best']['optimizer']}` with `{json.dumps(report['best']['hyperparameters'])}`", "",
        "| result | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in r.items()), "",
        "| phase | optimizer | seed | best validation | test at best |", "| --- | --- | --- | --- | --- |",
        *(f"| search | {s['optimizer']} | {s['seed']} | {s['best_validation']} | {s['test_at_best']} |" for s in report["search"]),
        *(f"| rerun | {s['optimizer']} | {s['seed']} | {s['best_validation']} | {s['test_at_best']} |" for s in report["reruns"]),
    ]
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path
