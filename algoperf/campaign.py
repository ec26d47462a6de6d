"""A campaign: one submission on some workloads under a ruleset, as a list of trials.

External tuning draws ``studies x trials`` points from the submission's search space
(quasi-random for a distribution space, in order for a list of points): study k takes
points k*T+1 .. (k+1)*T. Self-tuning runs ``studies`` repetitions with no
hyperparameters and the budget multiplied by ``SELF_TUNING_BUDGET_FACTOR``. Each trial's
seed is derived from the campaign seed, the study and the trial, so the same command
gives the same trials. A trial whose directory says it finished is not run again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from algoperf import tuning
from algoperf.submission import Submission, SubmissionError
from algoperf.trial import TrialConfig, TrialObserver, TrialResult, run_trial
from algoperf.trial_log import TrialLog

RULESETS = ("external", "self")
SELF_TUNING_BUDGET_FACTOR = 1.5  # AlgoPerf v0.6


def trial_seed(campaign_seed: int, study: int, trial: int) -> int:
    """A 31-bit seed for one trial, derived from the campaign seed."""
    return int(np.random.SeedSequence([campaign_seed, study, trial]).generate_state(1)[0] >> 1)


def plan_trials(
    submission: Submission,
    workloads: Iterable[str],
    *,
    ruleset: str = "external",
    studies: int = 1,
    trials: int = 1,
    seed: int = 0,
    experiment_dir: str | Path = "experiments",
    experiment_name: str | None = None,
    hyperparameters: dict[str, Any] | None = None,
    max_steps: int | None = None,
    data_dir: str | None = None,
    budget_factor: float | None = None,
    workload_kwargs: dict[str, Any] | None = None,
) -> list[TrialConfig]:
    """The trials of a campaign, in the order they should run."""
    if ruleset not in RULESETS:
        raise ValueError(f"unknown ruleset {ruleset!r}; choose one of {', '.join(RULESETS)}")
    if studies < 1 or trials < 1:
        raise ValueError("--studies and --trials must be at least 1")
    if ruleset == "self":
        points: list[dict[str, Any] | None] = [hyperparameters] * studies
        trials = 1
        factor = SELF_TUNING_BUDGET_FACTOR if budget_factor is None else budget_factor
    else:
        factor = 1.0 if budget_factor is None else budget_factor
        if hyperparameters is not None:
            points = [hyperparameters] * (studies * trials)
        elif submission.search_space is not None:
            points = submission.search_space.points(studies * trials, seed=seed)
        else:
            raise SubmissionError(
                f"{submission.path}: external tuning needs hyperparameters: put a "
                f"tuning_search_space.json beside the submission, pass --hparams, or use --ruleset self"
            )
    name = experiment_name or f"{submission.name}_{ruleset}"
    configs = []
    for workload in workloads:
        for study in range(studies):
            for trial in range(trials):
                point = points[study * trials + trial]
                configs.append(
                    TrialConfig(
                        workload=workload,
                        submission=submission.path,
                        hyperparameters={k: tuning.as_builtin(v) for k, v in point.items()} if point else None,
                        seed=trial_seed(seed, study, trial),
                        experiment_dir=experiment_dir,
                        experiment_name=name,
                        trial_index=trial + 1,
                        study_index=study if studies > 1 else None,
                        max_steps=max_steps,
                        data_dir=data_dir,
                        budget_factor=factor,
                        workload_kwargs=dict(workload_kwargs or {}),
                        ruleset=ruleset,
                    )
                )
    return configs


def finished_result(config: TrialConfig) -> dict[str, Any] | None:
    """The recorded result of a trial that already finished, else None."""
    return TrialLog(config.path).read_result() if config.path.exists() else None


def run_local(
    configs: list[TrialConfig],
    submission: Submission,
    observer_for: Callable[[TrialConfig], TrialObserver | None] = lambda _: None,
    on_skip: Callable[[TrialConfig, dict[str, Any]], None] = lambda *_: None,
) -> list[TrialResult | dict[str, Any]]:
    """Run trials one after another in this process; finished ones are skipped."""
    results: list[TrialResult | dict[str, Any]] = []
    for config in configs:
        done = finished_result(config)
        if done is not None:
            on_skip(config, done)
            results.append(done)
            continue
        results.append(run_trial(replace(config), observer_for(config), submission=submission))
    return results
