"""`make demo`: the whole product in small, on this machine.

Runs a few baseline submissions on cheap workloads (through the same `algoperf run` a
user types, tracked in MLflow), scores them with `algoperf score`, and prints the
command that opens the dashboard. Each step is the real CLI in a subprocess, so the demo
shows exactly what a user would see.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from algoperf import registry

SUBMISSIONS = ["nadamw", "adamw", "lion"]
WORKLOADS = ["mnist1d", "ctr"]


def _run(args: list[str]) -> int:
    print(f"\n$ algoperf {shlex.join(args)}", flush=True)
    return subprocess.call([sys.executable, "-m", "algoperf.cli", *args])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiment-dir", default="experiments/demo")
    args = parser.parse_args(argv)
    experiment_dir = Path(args.experiment_dir)
    submissions = [s for s in SUBMISSIONS if s in registry.submission_names()]
    workloads = [w for w in WORKLOADS if w in registry.workload_names()]
    for submission in submissions:
        run = ["run", "--submission", submission, "--experiment-dir", str(experiment_dir),
               "--experiment-name", submission]
        for workload in workloads:
            run += ["--workload", workload]
        if _run(run) != 0:
            return 1
    # Scored from MLflow alone; the score table and plots are logged back onto each campaign.
    score = ["score", "--output", str(experiment_dir / "score")]
    for submission in submissions:
        score += ["--experiment", submission]
    if _run(score) != 0:
        return 1
    print(f"\nTrial logs (AlgoPerf format): {experiment_dir}/")
    print(f"Score table and performance profile: {experiment_dir / 'score'}/")
    print("Open the dashboard:  algoperf ui   (then follow the printed URL)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
