"""What defines a trial (``TrialConfig``) and how it ended (``TrialResult``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from algoperf.runner.trial_log import trial_dir

# Trial outcomes.
REACHED = "reached_target"
MISSED = "missed"
DIVERGED = "diverged"
FAILED = "failed"


@dataclass
class TrialConfig:
    """Everything that defines one trial."""

    workload: str
    submission: str | Path
    hyperparameters: dict[str, Any] | None = None
    seed: int = 0
    experiment_dir: str | Path = "experiments"
    experiment_name: str = "default"
    trial_index: int = 1
    study_index: int | None = None
    max_steps: int | None = None
    data_dir: str | None = None
    budget_factor: float = 1.0
    workload_kwargs: dict[str, Any] = field(default_factory=dict)
    ruleset: str = "external"
    # Save a checkpoint at each eval (untimed) so a killed trial resumes (algoperf.runner.checkpoint).
    checkpoints: bool = True
    # Analysis mode, not the benchmark's rule: eval every N steps instead of every
    # eval_period_time_sec of submission time, so the step at which a target is first
    # seen does not depend on the machine's speed (reproducibility studies).
    eval_every_steps: int | None = None
    # --batch-size overrides, by workload name (algoperf.submission.batch_size).
    batch_sizes: dict[str, int] = field(default_factory=dict)
    # --submission-style: auto | jit | pmap (algoperf.compat.style).
    submission_style: str = "auto"

    @property
    def path(self) -> Path:
        return trial_dir(self.experiment_dir, self.experiment_name, self.workload, self.trial_index, self.study_index)


@dataclass
class TrialResult:
    """How a trial ended. ``time_to_result`` is None unless the validation target was reached."""

    status: str
    stop_reason: str
    time_to_result: float | None
    global_step: int
    accumulated_submission_time: float
    accumulated_eval_time: float
    accumulated_logging_time: float
    total_duration: float
    num_evals: int
    best_validation: float | None
    trial_dir: str
    workload: str
    submission: str
    seed: int
    error: str | None = None  # the exception and its full traceback (also traceback.txt)
    error_summary: str | None = None  # one line: exception, file:line, likely cause (algoperf.runner.failure)
    eval_errors: int = 0  # evals that raised (each in eval_errors.txt; algoperf.runner.eval_errors)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
