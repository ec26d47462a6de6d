"""Reproducibility: the same seeded trial, run several times.

    python benchmarks/bench_reproducibility.py [--runs 5]

The step at which the target is reached must be identical on every run (same seed, same
machine). Evals follow submission time, so the step at which a target is first *seen*
depends on the machine's speed; these runs therefore eval every 50 steps (the runner's
analysis mode) to compare steps, and the time to target, which varies with the machine,
is reported as its coefficient of variation (std / mean).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from algoperf.runner.trial import TrialConfig, run_trial
from algoperf.runner.trial_log import read_evals
from algoperf.workloads.mnist1d.workload import Mnist1dWorkload

POINT = json.loads((Path(__file__).resolve().parents[1] / "submissions" / "nadamw" / "tuning_search_space.json").read_text())[0]


def measure(runs: int = 5, workload: str = "mnist1d") -> dict:
    steps, times, curves = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            config = TrialConfig(workload=workload, submission="nadamw", hyperparameters=POINT, seed=7,
                                 experiment_dir=tmp, experiment_name=f"r{i}", eval_every_steps=50)
            result = run_trial(config)
            rows = read_evals(config.path)
            hit = next((r for r in rows if r["validation/accuracy"] > Mnist1dWorkload.validation_target_value), None)
            steps.append(int(hit["global_step"]) if hit else None)
            times.append(result.time_to_result)
            curves.append([r["train/loss"] for r in rows][:1])
    finite = [t for t in times if t is not None]
    return {
        "target_steps": steps,
        "target_step_identical": len(set(steps)) == 1 and steps[0] is not None,
        "first_eval_loss_identical": len({tuple(c) for c in curves}) == 1,
        "time_to_target_s": times,
        "time_to_target_cv": statistics.pstdev(finite) / statistics.mean(finite) if len(finite) > 1 else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    out = measure(parser.parse_args().runs)
    print(f"reproducibility: target steps {out['target_steps']} (identical: {out['target_step_identical']}), "
          f"time-to-target CV {out['time_to_target_cv']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
