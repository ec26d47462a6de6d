"""The small-suite v0.5 leaderboard campaign: every v0.5 external-tuning entry on the small suite.

Runs ``algoperf run`` once per (workload, entry) under the external-tuning rules with the
entry's own search space, workload-major so that partial results cover whole workloads.
Finished trials are never rerun, so killing this script and starting it again resumes the
campaign (a killed trial resumes from its checkpoint). Logs go to ``--out``; ``--publish``
copies the finished trials' small files (CSV, JSON) into the repository.

    taskset -c 1 python benchmarks/leaderboard_v05/run_campaign.py --out /work/campaign

Entries: the five JAX entries run unmodified from their published folders (``--published``,
default ../shared/data/algoperf_v05/submissions/external_tuning); the six PyTorch-only
entries are our JAX ports, ``submissions/leaderboard_v05/<name>`` (skipped until they exist).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PUBLISHED_JAX = ["baseline", "nadamp", "generalized_adam", "amos", "caspr_adaptive"]
PORTED = ["shampoo_submission", "schedule_free_adamw", "cyclic_lr", "lawa_ema", "lawa_queue", "schedule_free_prodigy"]
WORKLOADS = ["mnist1d", "ctr", "molgraph", "mri", "speech", "translate", "charlm"]
KEEP = ("eval_measurements.csv", "hparams.json", "meta_data_0.json", "trial_result.json", "traceback.txt")


def entry_path(name: str, published: Path) -> Path | None:
    if name in PUBLISHED_JAX:
        path = published / name
    else:
        path = REPO / "submissions" / "leaderboard_v05" / name
    return path if (path / "submission.py").exists() else None


def publish(out: Path, dest: Path) -> int:
    """Copy every finished trial's small files (never checkpoints) from ``out`` to ``dest``."""
    copied = 0
    for result in out.rglob("trial_result.json"):
        trial = result.parent
        target = dest / trial.relative_to(out)
        target.mkdir(parents=True, exist_ok=True)
        for name in KEEP:
            if (trial / name).exists():
                shutil.copy2(trial / name, target / name)
        copied += 1
    return copied


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where the trial folders go")
    parser.add_argument("--published", type=Path, default=REPO.parent / "shared/data/algoperf_v05/submissions/external_tuning")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--studies", type=int, default=1)
    parser.add_argument("--entries", default=",".join(PUBLISHED_JAX + PORTED))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--publish", type=Path, help="copy finished trials' CSV/JSON files here after each run")
    args = parser.parse_args()
    algoperf = Path(sys.executable).parent / "algoperf"
    for workload in args.workloads.split(","):
        for name in args.entries.split(","):
            path = entry_path(name, args.published)
            if path is None:
                print(f"[campaign] {name}: no submission yet, skipped", flush=True)
                continue
            command = [str(algoperf), "run", "--submission", str(path), "--workload", workload,
                       "--ruleset", "external", "--trials", str(args.trials), "--studies", str(args.studies),
                       "--experiment-dir", str(args.out), "--experiment-name", name,
                       "--no-tracking", "--executor", "ray", "--hardware", "cpu:1"]
            started = time.monotonic()
            print(f"[campaign] {time.strftime('%H:%M:%S')} {name} on {workload}: {' '.join(command)}", flush=True)
            rc = subprocess.call(command, env={**os.environ, "COLUMNS": "200"})
            print(f"[campaign] {name} on {workload}: exit {rc} after {time.monotonic() - started:.0f} s", flush=True)
            if args.publish:
                publish(args.out, args.publish)
    return 0


if __name__ == "__main__":
    sys.exit(main())
