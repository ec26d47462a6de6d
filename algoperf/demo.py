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
EXPERIMENT = "demo"


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
    # One campaign: every submission in one `algoperf run`, so they land in one MLflow
    # experiment and the dashboard compares them on one page.
    run = ["run", "--experiment-dir", str(experiment_dir), "--experiment-name", EXPERIMENT, "--experiment", EXPERIMENT]
    for submission in submissions:
        run += ["--submission", submission]
    for workload in workloads:
        run += ["--workload", workload]
    if _run(run) != 0:
        return 1
    # Scored from MLflow alone; the score table, plots and the experiment's description are
    # written back onto the campaign.
    if _run(["score", "--experiment", EXPERIMENT, "--output", str(experiment_dir / "score")]) != 0:
        return 1
    print(f"\nTrial logs (AlgoPerf format): {experiment_dir}/")
    print(f"Score table and performance profile: {experiment_dir / 'score'}/")
    print(f"Open the dashboard:  algoperf ui --experiment {EXPERIMENT}   (then follow the printed URL)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
