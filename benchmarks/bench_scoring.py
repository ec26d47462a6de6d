"""Time reading and scoring the AlgoPerf v0.5 self-tuning leaderboard logs.

    python benchmarks/bench_scoring.py [LOGS_DIR]

LOGS_DIR defaults to ../shared/data/algoperf_leaderboard_logs next to the repository.
Prints one line and returns {"read_seconds", "score_seconds", "bootstrap_seconds",
"cached_read_seconds", ...}: reading is discovering and parsing every
eval_measurements.csv (I/O in a thread pool; the in-process parse cache emptied first);
cached_read_seconds the same read again with the cache warm; scoring is times to target,
the AlgoPerf rules and both areas plus a 1000-replicate bootstrap (its own share is
bootstrap_seconds). Each figure is the best of ``repeats`` runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from algoperf.scoring import (
    ScoringOptions,
    bootstrap,
    build_table,
    load_targets,
    read_logs,
    score_table,
)
from algoperf.scoring import logs as scoring_logs

DEFAULT_LOGS = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "algoperf_leaderboard_logs"
)


def main(logs: Path = DEFAULT_LOGS, replicates: int = 1000, repeats: int = 3) -> dict[str, float]:
    tree = logs / "v05_self_tuning"
    if not tree.is_dir():
        raise SystemExit(f"no v0.5 self-tuning logs at {tree}")
    targets = load_targets(logs / "workload_targets_v05.json")
    options = ScoringOptions(ruleset="self", heldout_rule="v0.5", area="trapezoid")
    keys = ("read_seconds", "cached_read_seconds", "score_seconds", "bootstrap_seconds")
    best = dict.fromkeys(keys, float("inf"))
    for _ in range(repeats):
        scoring_logs._CACHE.clear()
        t0 = time.perf_counter()
        records = read_logs(tree, "self")
        t1 = time.perf_counter()
        read_logs(tree, "self")
        best["cached_read_seconds"] = min(best["cached_read_seconds"], time.perf_counter() - t1)
        t1 = time.perf_counter()
        result = score_table(build_table(records, targets, options), options, "baseline")
        t2 = time.perf_counter()
        bootstrap(result, n=replicates, seed=0)
        t3 = time.perf_counter()
        best["read_seconds"] = min(best["read_seconds"], t1 - t0)
        best["score_seconds"] = min(best["score_seconds"], t3 - t1)
        best["bootstrap_seconds"] = min(best["bootstrap_seconds"], t3 - t2)
    out = {**best, "trials": float(len(records)), "replicates": float(replicates)}
    print(
        f"bench_scoring: {len(records)} trial logs read in {out['read_seconds']:.3f} s "
        f"({out['cached_read_seconds']:.3f} s cached); "
        f"scored in {out['score_seconds']:.3f} s "
        f"(of which {replicates}-replicate bootstrap {out['bootstrap_seconds']:.3f} s), "
        f"best of {repeats}"
    )
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_LOGS)
