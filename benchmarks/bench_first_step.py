"""First-step cost: from typing `algoperf run` to the first training step, and its split.

    python benchmarks/bench_first_step.py

Measured in a fresh process each, as a user meets it: `imports` is a process that only
imports the CLI and JAX/Flax/optax; `total` is `algoperf run ... --max-steps 1` from
process start to exit; the trial's own log gives the first step's submission time (mostly
XLA compilation) and the eval time; setup is the rest (data, model and optimizer init,
Ray start when used).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from algoperf.runner.trial_log import read_evals


def _timed(args: list[str]) -> float:
    begin = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - begin


def measure() -> dict:
    python = sys.executable
    startup = _timed([python, "-c", "pass"])
    imports = _timed([python, "-c", "import algoperf.cli, jax, flax.linen, optax; jax.devices()"]) - startup
    with tempfile.TemporaryDirectory() as tmp:
        total = _timed([python, "-m", "algoperf.cli", "run", "-s", "nadamw", "-w", "mnist1d", "--max-steps", "1",
                        "--experiment-dir", tmp, "--experiment-name", "first", "--no-tracking"]
                       if _supports_no_tracking() else
                       [python, "-m", "algoperf.cli", "run", "-s", "nadamw", "-w", "mnist1d", "--max-steps", "1",
                        "--experiment-dir", tmp, "--experiment-name", "first"])
        row = read_evals(next(Path(tmp).glob("first/*/trial_1")))[0]
    first_step = row["accumulated_submission_time"]
    eval_time = row["accumulated_eval_time"]
    return {
        "time_to_first_step_s": total - eval_time,
        "split": {
            "python_startup_s": startup,
            "imports_s": imports,
            "first_step_incl_compile_s": first_step,
            "setup_s": total - startup - imports - first_step - eval_time,
            "first_eval_s": eval_time,
        },
    }


def _supports_no_tracking() -> bool:
    out = subprocess.run([sys.executable, "-m", "algoperf.cli", "run", "--help"], capture_output=True, text=True)
    return "--no-tracking" in out.stdout


def main() -> int:
    out = measure()
    print(f"time to first step: {out['time_to_first_step_s']:.2f} s; split: {json.dumps({k: round(v, 2) for k, v in out['split'].items()})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
