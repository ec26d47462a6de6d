"""`make bench`: measure the harness itself and write benchmarks/results.json.

Each figure is a ratio (or a count) measured within one run, so it holds on a noisy
machine. Figures whose parts are missing (e.g. no leaderboard logs) are reported as null
with the reason. Run one figure alone with `python benchmarks/run.py --only NAME`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _overhead() -> dict:
    import bench_overhead

    return bench_overhead.measure()


def _timing() -> dict:
    import bench_timing

    return bench_timing.measure()


def _reproducibility() -> dict:
    import bench_reproducibility

    return bench_reproducibility.measure()


def _first_step() -> dict:
    import bench_first_step

    return bench_first_step.measure()


def _scoring() -> dict:
    import bench_scoring

    return bench_scoring.main()


def _logging() -> dict:
    import bench_logging

    return bench_logging.measure()


def _scheduling() -> dict:
    import bench_scheduling

    return bench_scheduling.measure()


def _image_pipeline() -> dict:
    import bench_image_pipeline

    return bench_image_pipeline.measure()


FIGURES: dict[str, tuple[Callable[[], dict], str, str]] = {
    # name: (measure, results.json key, goal)
    "overhead": (_overhead, "harness_overhead_ratio", ">= 0.98"),
    "timing": (_timing, "timing_error", "<= 0.01"),
    "logging": (_logging, "logging_cost", "<= 0.01"),
    "scheduling": (_scheduling, "packing_efficiency", ">= 0.95"),
    "first_step": (_first_step, "time_to_first_step_s", "reported"),
    "reproducibility": (_reproducibility, "target_step_identical", "true"),
    "scoring": (_scoring, "seconds_per_1000_csvs", "reported"),
    "image_pipeline": (_image_pipeline, "vit_images_per_cpu_s", "reported"),
}


def machine() -> dict:
    from algoperf import hardware

    return {**hardware.describe(), "versions": hardware.versions(), "python": platform.python_version()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(FIGURES), action="append")
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    results: dict = {"machine": machine(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "details": {}}
    for name in args.only or FIGURES:
        measure, key, goal = FIGURES[name]
        begin = time.perf_counter()
        try:
            detail = measure()
            results[key] = detail.get(key)
            results["details"][name] = detail
        except Exception as e:  # noqa: BLE001 - one broken figure must not hide the others
            results[key] = None
            results["details"][name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        print(f"{key:>24} = {results[key]!s:<24} goal {goal:<10} ({time.perf_counter() - begin:.0f} s)", flush=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
