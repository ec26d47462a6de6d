"""Time reading and scoring whole published AlgoPerf leaderboards, per 1000 trial CSVs.

    python benchmarks/bench_scoring.py [LOGS_DIR]

LOGS_DIR defaults to ../shared/data/algoperf_leaderboard_logs next to the repository;
every ruleset tree in it (v05_self_tuning, v06_external_tuning: all their trial CSVs) is
scored as ``algoperf score --logs TREE --bootstrap 0`` does, with no flags: find the
trial folders, parse every eval_measurements.csv (the in-process parse cache emptied
first), choose the benchmark version and its shipped targets, times to target, the
rules and both areas. Figures, each the best of ``repeats`` runs:

* ``seconds_per_1000_csvs``: that work per 1000 CSVs, wall-clock (the headline);
* ``cpu_seconds_per_1000_csvs``: the same in CPU time of this process (all its threads),
  which a busy shared machine inflates less than the wall-clock;
* ``cached_seconds_per_1000_csvs``: the same again with the parse cache warm;
* ``bootstrap_seconds``: a 1000-replicate bootstrap of the largest tree's scores;
* ``cli_seconds``: the whole command on the largest tree in a fresh process (Python and
  package imports included, which dominate it).

AlgoPerf's own scorer is not run beside it: its code (``scoring/`` of
mlcommons/submissions_algorithms or algorithmic-efficiency) is not on the package index
this machine reaches, and the project does not copy it; ``reference_ratio`` is null with
that reason.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from algoperf.scoring import bootstrap, build_table, read_logs, score_table
from algoperf.scoring import logs as scoring_logs
from algoperf.scoring.logs import infer_ruleset
from algoperf.scoring.versions import choose_version, default_targets

DEFAULT_LOGS = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "algoperf_leaderboard_logs"
)
REFERENCE_NOTE = (
    "AlgoPerf's scorer (scoring/ of mlcommons/submissions_algorithms) is not installable "
    "from the package index reachable here and is not copied into this project"
)


def score_tree(tree: Path):
    """What ``algoperf score --logs TREE --bootstrap 0`` computes, in this process."""
    ruleset = infer_ruleset(tree) or "external"
    records = read_logs(tree, ruleset, warn=lambda _: None)
    logged = {r.workload for r in records}
    version, _ = choose_version(None, None, [tree], logged)
    targets = default_targets(version, logged)
    options = version.options(ruleset, studies=version.studies, trials=version.trials)
    return score_table(build_table(records, targets, options, lambda _: None), options), records


def main(logs: Path = DEFAULT_LOGS, replicates: int = 1000, repeats: int = 3) -> dict:
    trees = sorted(p for p in logs.iterdir() if p.is_dir()) if logs.is_dir() else []
    if not trees:
        raise SystemExit(f"no leaderboard log trees in {logs}")
    best = dict.fromkeys(("cold", "cpu", "warm", "boot", "cli"), float("inf"))
    csvs = 0
    largest = max(trees, key=lambda t: sum(1 for _ in t.rglob("eval_measurements.csv")))
    for _ in range(repeats):
        scoring_logs._CACHE.clear()
        c0, t0 = time.process_time(), time.perf_counter()
        results = [score_tree(t) for t in trees]
        c1, t1 = time.process_time(), time.perf_counter()
        best["cpu"] = min(best["cpu"], c1 - c0)
        for t in trees:
            score_tree(t)
        t2 = time.perf_counter()
        csvs = sum(len(records) for _, records in results)
        largest_result = results[trees.index(largest)][0]
        bootstrap(largest_result, n=replicates, seed=0)
        t3 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "algoperf.cli", "score", "--logs", str(largest),
             "--bootstrap", "0", "--json"],
            check=True, capture_output=True,
        )
        t4 = time.perf_counter()
        for key, seconds in (("cold", t1 - t0), ("warm", t2 - t1), ("boot", t3 - t2), ("cli", t4 - t3)):
            best[key] = min(best[key], seconds)
    out = {
        "seconds_per_1000_csvs": best["cold"] / csvs * 1000,
        "cpu_seconds_per_1000_csvs": best["cpu"] / csvs * 1000,
        "cached_seconds_per_1000_csvs": best["warm"] / csvs * 1000,
        "csvs": csvs,
        "trees": [t.name for t in trees],
        "bootstrap_seconds": best["boot"],
        "replicates": replicates,
        "cli_seconds": best["cli"],
        "cli_tree": largest.name,
        "reference_ratio": None,
        "reference_note": REFERENCE_NOTE,
    }
    print(
        f"bench_scoring: {csvs} trial CSVs of {len(trees)} published trees read and scored in "
        f"{best['cold']:.3f} s = {out['seconds_per_1000_csvs']:.3f} s per 1000 CSVs "
        f"({out['cpu_seconds_per_1000_csvs']:.3f} s of CPU; {out['cached_seconds_per_1000_csvs']:.3f} s "
        f"cached); {replicates}-replicate bootstrap "
        f"of {largest.name} {best['boot']:.3f} s; `algoperf score` on it {best['cli']:.2f} s "
        f"in a fresh process; best of {repeats}. AlgoPerf's scorer not run: {REFERENCE_NOTE}"
    )
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_LOGS)
