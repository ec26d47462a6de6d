"""Run candidates' trials through the campaign machinery: Ray tasks with pinned cores, or in process.

A candidate is a submission folder (``export.write_submission``); each (candidate,
workload) is one trial planned by ``campaign.plan.plan_trials`` with the candidate's
learning rate, in ``<search>/trials/<hash>/<workload>_jax/trial_1``. With the Ray
executor the trials of one generation run as ``campaign.ray_executor.run_campaign``
tasks (each in a fresh process, pinned to its own cores, as for `algoperf run`); a trial
whose folder holds trial_result.json is never run again, so a restarted search re-reads
the results of trials it already ran. Every trial actually run is appended to
``evaluations.jsonl`` (the check that no candidate is evaluated twice reads it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console


@dataclass(frozen=True)
class Job:
    hash: str
    folder: Path
    workload: str
    lr: float
    budget_factor: float = 1.0


class Evaluator:
    def __init__(self, root: Path, executor: str = "ray", hardware: str | None = "cpu:1",
                 max_steps: int | None = None, console: Console | None = None) -> None:
        if executor not in ("ray", "local"):
            raise ValueError(f"--executor {executor!r}: choose ray or local")
        self.root, self.executor, self.hardware, self.max_steps = root, executor, hardware, max_steps
        self.console = console or Console(stderr=True)

    def _config(self, job: Job) -> Any:
        from algoperf.campaign.plan import plan_trials
        from algoperf.submission.loading import load_submission

        submission = load_submission(job.folder)
        (config,) = plan_trials(
            submission, [job.workload], hyperparameters={"learning_rate": job.lr}, experiment_dir=self.root / "trials",
            experiment_name=job.hash, max_steps=self.max_steps, budget_factor=job.budget_factor,
        )
        return config, submission

    def run(self, jobs: list[Job], generation: int) -> list[float | None]:
        """Time to target of each job's trial (None: missed, diverged or failed)."""
        if not jobs:
            return []
        planned = [self._config(job) for job in jobs]
        if self.executor == "ray":
            from algoperf.campaign.ray_executor import run_campaign

            outcomes = run_campaign([c for c, _ in planned], hardware=self.hardware, console=self.console, live=False)
            rows = [(o.state == "finished", o.row()) for o in outcomes]
        else:
            from algoperf.campaign.plan import finished_result
            from algoperf.runner.trial import run_trial

            rows = []
            for config, submission in planned:
                done = finished_result(config)
                rows.append((False, done) if done is not None else (True, run_trial(config, None, submission=submission).to_dict()))
        with (self.root / "evaluations.jsonl").open("a") as f:
            for job, (ran, row) in zip(jobs, rows, strict=True):
                if ran:
                    f.write(json.dumps({"hash": job.hash, "workload": job.workload, "generation": generation,
                                        "status": row.get("status"), "time_to_result": row.get("time_to_result")}) + "\n")
        return [row.get("time_to_result") for _, row in rows]
