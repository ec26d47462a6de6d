"""The campaign behind a shipped leaderboard: every entry on the small suite, resumable.

``algoperf leaderboard run`` calls ``algoperf run`` once per (workload, entry) under the
external-tuning rules with the entry's own search space, workload-major so that a partial
campaign covers whole workloads for every entry. Finished trials are never run again, so a
killed campaign resumes where it stopped (a killed trial from its checkpoint). Each trial is
a Ray task pinned to one core (``--hardware cpu:1``), the small suite's reference hardware.
``publish`` copies finished trials' CSV/JSON files (never checkpoints) into the package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# The five v0.5 entries written for JAX run unmodified from their published folders; the
# six PyTorch-only ones run as our JAX ports (submissions/leaderboard_v05/<name>).
PUBLISHED_JAX = ("baseline", "nadamp", "generalized_adam", "amos", "caspr_adaptive")
PORTED = ("shampoo_submission", "schedule_free_adamw", "cyclic_lr", "lawa_ema", "lawa_queue", "schedule_free_prodigy")
WORKLOADS = ("mnist1d", "ctr", "molgraph", "mri", "speech", "translate", "charlm")
KEPT_FILES = ("eval_measurements.csv", "hparams.json", "meta_data_0.json", "trial_result.json", "traceback.txt")


@dataclass(frozen=True)
class CampaignPlan:
    out: Path  # trial folders: <out>/<entry>/<workload>_jax/trial_<n>
    published_entries: Path | None  # folder holding the published JAX entries' folders
    entries: tuple[str, ...] = PUBLISHED_JAX + PORTED
    workloads: tuple[str, ...] = WORKLOADS
    trials: int = 5
    studies: int = 1
    hardware: str = "cpu:1"


def entry_folder(name: str, published_entries: Path | None) -> Path | None:
    """The submission folder of an entry, or None where it is not available here."""
    if name in PUBLISHED_JAX:
        path = published_entries / name if published_entries else None
    else:
        import algoperf.submissions as builtins

        path = Path(builtins.__path__[0]) / "leaderboard_v05" / name
    return path if path is not None and (path / "submission.py").is_file() else None


def run_command(plan: CampaignPlan, name: str, folder: Path, workload: str) -> list[str]:
    """The `algoperf run` invocation of one (entry, workload): the documented command."""
    return [
        sys.executable, "-m", "algoperf.cli", "run", "--submission", str(folder), "--workload", workload,
        "--ruleset", "external", "--trials", str(plan.trials), "--studies", str(plan.studies),
        "--experiment-dir", str(plan.out), "--experiment-name", name,
        "--no-tracking", "--executor", "ray", "--hardware", plan.hardware,
    ]


def run_campaign(plan: CampaignPlan, say: Callable[[str], None], publish_to: Path | None = None) -> int:
    """Run (or resume) the campaign; returns how many (entry, workload) runs exited non-zero."""
    failures = 0
    if publish_to is not None:
        seeded = seed_from_published(publish_to, plan.out)
        if seeded:
            say(f"resuming from {publish_to}: {seeded} finished trials copied into {plan.out}")
    for workload in plan.workloads:
        for name in plan.entries:
            if finished_trials(plan, name, workload) >= plan.trials * plan.studies:
                continue  # nothing left to run: spares a process start per finished pair on resume
            folder = entry_folder(name, plan.published_entries)
            if folder is None:
                say(f"{name}: no submission folder here (published JAX entries need --published-entries), skipped")
                continue
            started = time.monotonic()
            say(f"{time.strftime('%H:%M:%S')} {name} on {workload}")
            rc = subprocess.call(run_command(plan, name, folder, workload), env={**os.environ, "COLUMNS": "200"})
            say(f"{name} on {workload}: exit {rc} after {time.monotonic() - started:.0f} s")
            failures += rc != 0
            if publish_to is not None:
                publish(plan.out, publish_to)
    return failures


def finished_trials(plan: CampaignPlan, name: str, workload: str) -> int:
    """How many trials of (entry, workload) have finished in ``plan.out`` (with or without study folders)."""
    entry = plan.out / name
    return sum(1 for r in entry.rglob("trial_result.json") if r.parent.parent.name == f"{workload}_jax")


def seed_from_published(published: Path, out: Path) -> int:
    """Copy published trials that ``out`` lacks back into it, so that they are not run again.

    Only CSV/JSON travel to the published folder (and so to a new checkout), which is what
    `algoperf run` needs to skip a finished trial; a new session continues the campaign from
    the committed logs with an empty ``out``. Returns the number of trials copied.
    """
    copied = 0
    for result in sorted(Path(published).rglob("trial_result.json")):
        target = out / result.parent.relative_to(published)
        if (target / "trial_result.json").exists():
            continue
        shutil.copytree(result.parent, target, dirs_exist_ok=True)
        copied += 1
    return copied


def publish(out: Path, dest: Path) -> int:
    """Copy every finished trial's small files from ``out`` to ``dest``; returns the trial count."""
    copied = 0
    for result in sorted(Path(out).rglob("trial_result.json")):
        trial = result.parent
        target = dest / trial.relative_to(out)
        target.mkdir(parents=True, exist_ok=True)
        for name in KEPT_FILES:
            if (trial / name).exists():
                shutil.copy2(trial / name, target / name)
        copied += 1
    return copied
