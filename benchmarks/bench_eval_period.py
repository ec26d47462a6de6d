"""Effect of the eval-period clock on time to result (docs/differences.md, issue #24).

AlgoPerf's runner (and ours) starts an eval once ``eval_period_time_sec`` of *wall time*
has passed since the end of the last eval; an earlier version of ours counted
*submission time* since the last eval. The two differ by the uncharged logging and
checkpointing after each eval, so the first eval that sees the target, and with it the
time to result, can come later or earlier. This runs the same trials (same seeds, same
hyperparameters) under both rules, interleaved, and reports each rule's median time to
result and the median of the paired ratios (submission-time rule / wall-time rule).

    taskset -c 0 python benchmarks/bench_eval_period.py --workload mnist1d --pairs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from algoperf.runner import trial as trial_module
from algoperf.runner.trial import run_trial
from algoperf.runner.types import TrialConfig

SEARCH_SPACE = Path(__file__).resolve().parent.parent / "submissions" / "nadamw" / "tuning_search_space.json"


def _submission_time_rule() -> None:
    """Patch the runner back to the old rule: submission time since the last eval."""
    cls = trial_module._TrialState
    original_evaluate = cls._evaluate

    def evaluate(self, eval_rng):
        self._last_eval_submission_time = self.clock.submission_time
        original_evaluate(self, eval_rng)

    def eval_due(self, now, submission_time, training_complete):
        if training_complete or submission_time >= self.budget or self.last_eval_end is None:
            return True
        return submission_time - self._last_eval_submission_time >= self.workload.eval_period_time_sec

    cls._evaluate, cls._eval_due = evaluate, eval_due
    return original_evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="mnist1d")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    point = json.loads(SEARCH_SPACE.read_text())[0]
    cls = trial_module._TrialState
    wall_rule = (cls._evaluate, cls._eval_due)
    results: dict[str, list[float | None]] = {"wall_since_eval_end": [], "submission_since_eval": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.pairs):
            for rule in results:  # interleaved: machine drift hits both rules alike
                cls._evaluate, cls._eval_due = wall_rule
                if rule == "submission_since_eval":
                    _submission_time_rule()
                config = TrialConfig(workload=args.workload, submission="nadamw", hyperparameters=point, seed=seed,
                                     experiment_dir=tmp, experiment_name=f"{rule}-{seed}", checkpoints=True)
                result = run_trial(config)
                results[rule].append(result.time_to_result)
                print(json.dumps({"rule": rule, "seed": seed, "time_to_result": result.time_to_result,
                                  "num_evals": result.num_evals, "logging": result.accumulated_logging_time}), flush=True)
    cls._evaluate, cls._eval_due = wall_rule
    pairs = [(s, w) for s, w in zip(results["submission_since_eval"], results["wall_since_eval_end"], strict=True)
             if s is not None and w is not None]
    ratios = sorted(s / w for s, w in pairs)
    summary = {
        "workload": args.workload,
        "median_time_to_result": {k: statistics.median([v for v in vs if v is not None] or [float("nan")]) for k, vs in results.items()},
        "paired_ratio_median": statistics.median(ratios) if ratios else None,
        "paired_ratio_range": [ratios[0], ratios[-1]] if ratios else None,
        "pairs_reached": len(pairs),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
