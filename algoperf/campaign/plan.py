"""A campaign: one submission on some workloads under a ruleset, as a list of trials.

External tuning draws ``studies x trials`` points from the submission's search space
(quasi-random for a distribution space, in order for a list of points): study k takes
points k*T+1 .. (k+1)*T. Self-tuning runs ``studies`` repetitions with no
hyperparameters and the budget multiplied by ``SELF_TUNING_BUDGET_FACTOR``. Each trial's
seed is derived from the campaign seed, the study and the trial, so the same command
gives the same trials. A trial whose directory says it finished is not run again; one
that a killed run left unfinished resumes from its checkpoint (``algoperf.runner.trial``).

All trials of a campaign run on one kind of hardware (``hardware_kind``: the hardware
label, plus the CPU model for CPU trials); a campaign whose trials already ran on one
kind refuses to go on on another unless told to (``allow_mixed_hardware``). Several
trials at once, on a cluster, with retries: ``algoperf.campaign.ray_executor``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from algoperf import hardware
from algoperf.runner.checkpoint import CheckpointMismatchError
from algoperf.runner.observers import TrialObserver
from algoperf.runner.trial import run_trial
from algoperf.runner.trial_log import TrialWriter
from algoperf.runner.types import FAILED, TrialConfig, TrialResult
from algoperf.scoring.targets import LATEST_VERSION, SELF_TUNING_FACTOR
from algoperf.submission import search_space as tuning
from algoperf.submission.loading import Submission, SubmissionError

RULESETS = ("external", "self")
# The rules version a campaign runs under; the factor itself lives with the scorer's rules.
SELF_TUNING_BUDGET_FACTOR = SELF_TUNING_FACTOR[LATEST_VERSION]


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
    batch_sizes: dict[str, int] | None = None,
) -> list[TrialConfig]:
    """The trials of a campaign, in the order they should run."""
    if ruleset not in RULESETS:
        raise ValueError(f"unknown ruleset {ruleset!r}; choose one of {', '.join(RULESETS)}")
    if studies < 1 or trials < 1:
        raise ValueError("--studies and --trials must be at least 1")
    if budget_factor is not None and not budget_factor > 0:
        raise ValueError(f"--budget-factor {budget_factor}: give a number > 0 (1.0 = the workload's budget)")
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
                        batch_sizes={workload: batch_sizes[workload]} if batch_sizes and workload in batch_sizes else {},
                        submission_style=submission.style,
                    )
                )
    return configs


class MixedHardwareError(Exception):
    """Trials of one campaign would run on different kinds of hardware."""


def recorded_hardware_kinds(configs: Iterable[TrialConfig]) -> set[str]:
    """The kinds of hardware the campaign's trials ran on so far (their meta data files)."""
    kinds = set()
    for config in configs:
        if not config.path.is_dir():
            continue
        for meta_file in config.path.glob("meta_data_*.json"):
            try:
                hw = json.loads(meta_file.read_text())["hardware"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            kinds.add(hardware.hardware_kind(hw))
    return kinds


def check_hardware(configs: Iterable[TrialConfig], kind: str, allow_mixed: bool = False) -> None:
    """Raise MixedHardwareError if earlier trials of the campaign ran on another kind than ``kind``."""
    others = recorded_hardware_kinds(configs) - {kind}
    if others and not allow_mixed:
        raise MixedHardwareError(
            f"this campaign's trials ran on {'; '.join(sorted(others))}, this machine is {kind}: "
            "run it where it started, use another --experiment-name, or pass --allow-mixed-hardware"
        )


def finished_result(config: TrialConfig) -> dict[str, Any] | None:
    """The recorded result of a trial that already finished, else None.

    A trial that failed (an exception in submission code) does not count as finished: the
    user has presumably fixed the submission, so it runs again. Its old folder is kept,
    moved to ``<workload>_jax/.failed/trial_<n>-<time>`` (hidden from scoring).
    """
    done = TrialWriter(config.path).read_result() if config.path.exists() else None
    if done is not None and done.get("status") == FAILED:
        archive = config.path.parent / ".failed" / f"{config.path.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        archive.parent.mkdir(exist_ok=True)
        config.path.rename(archive)
        return None
    return done


def run_local(
    configs: list[TrialConfig],
    submission: Submission,
    observer_for: Callable[[TrialConfig], TrialObserver | None] = lambda _: None,
    on_skip: Callable[[TrialConfig, dict[str, Any]], None] = lambda *_: None,
    allow_mixed_hardware: bool = False,
) -> list[TrialResult | dict[str, Any]]:
    """Run trials one after another in this process; finished ones are skipped.

    Raises MixedHardwareError before running anything if earlier trials of the campaign
    ran on another kind of hardware than this process has (unless allowed). A trial that
    fails (no batch size, no data, an exception in submission code) is a recorded result
    and the next one runs: a campaign never stops for one trial.
    """
    if any(finished_result(c) is None for c in configs):
        check_hardware(configs, hardware.hardware_kind(hardware.describe()), allow_mixed_hardware)
    results: list[TrialResult | dict[str, Any]] = []
    for config in configs:
        done = finished_result(config)
        if done is not None:
            on_skip(config, done)
            results.append(done)
            continue
        try:
            results.append(run_trial(replace(config), observer_for(config), submission=submission))
        except CheckpointMismatchError as e:  # another trial's folder: left untouched, the campaign goes on
            results.append(refused_row(config, str(e)))
    return results


def refused_row(config: TrialConfig, reason: str) -> dict[str, Any]:
    """A result-table row for a trial that was not run (its folder belongs to another trial)."""
    return {
        "workload": config.workload, "status": "error", "error": reason, "error_summary": reason,
        "global_step": 0, "accumulated_submission_time": 0.0, "time_to_result": None,
        "best_validation": None, "trial_dir": str(config.path),
    }
