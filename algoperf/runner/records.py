"""What a trial writes about itself besides its evals: its meta data, its result, and the
record of a trial that could not start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from algoperf import hardware
from algoperf.runner.failure import TrialFailure, describe_failure
from algoperf.runner.observers import TrialObserver
from algoperf.runner.trial_log import TrialWriter
from algoperf.runner.types import FAILED, TrialConfig, TrialResult
from algoperf.submission.loading import Submission


def trial_meta(config: TrialConfig, submission: Submission) -> dict[str, Any]:
    """The metadata of a trial (meta_data_<p>.json)."""
    hw = hardware.describe()
    return {
        "workload": config.workload,
        "submission": submission.name,
        "submission_path": str(submission.path),
        "submission_hash": submission.source_hash,
        "submission_style": submission.style,
        "submission_style_reason": submission.style_reason,
        "ruleset": config.ruleset,
        "seed": config.seed,
        "study": config.study_index,
        "trial": config.trial_index,
        "framework": "jax",
        "hardware": hw,
        "hardware_label": hardware.hardware_label(hw),
        "versions": hardware.versions(),
        "algoperf_git_commit": hardware.git_commit(Path(__file__).parent),
        "submission_git_commit": hardware.git_commit(submission.path),
    }


def record_setup_failure(
    config: TrialConfig, submission: Submission, log: TrialWriter, error: Exception,
    observer: TrialObserver | None, extra_meta: dict[str, Any] | None,
) -> TrialResult:
    """Record a trial that could not start (no batch size, no data, a broken workload)."""
    failure = describe_failure(error, submission.path)
    meta = {**trial_meta(config, submission), "batch_size": None, "preemption_count": 0, **(extra_meta or {})}
    log.write_hparams(config.hyperparameters)
    log.write_meta(meta, preemption_count=0)
    if observer:
        observer.on_start(config, meta)
    result = TrialResult(
        status=FAILED, stop_reason="setup", time_to_result=None, global_step=0, accumulated_submission_time=0.0,
        accumulated_eval_time=0.0, accumulated_logging_time=0.0, total_duration=0.0, num_evals=0,
        best_validation=None, trial_dir=str(config.path), workload=config.workload, submission=submission.name,
        seed=config.seed, error=failure.details(), error_summary=failure.summary(),
    )
    return record_result(result, log, observer, failure)


def record_result(result: TrialResult, log: TrialWriter, observer: TrialObserver | None,
                  failure: TrialFailure | None, submission_metrics: list | None = None) -> TrialResult:
    """Write a finished trial's result (its submission's logged scalars, its traceback) and tell the observer."""
    if submission_metrics is not None:
        log.append_submission_metrics(submission_metrics)
    if failure is not None:
        log.write_traceback(failure.traceback)
    log.write_result(result.to_dict())
    if observer:
        observer.on_end(result)
    return result
