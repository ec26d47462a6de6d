"""Harness overhead: steps/s under `run_trial` against a bare JAX + optax loop.

    python benchmarks/bench_overhead.py [--steps 3000] [--repeats 3]

Both sides train mnist1d with the NAdamW baseline's own jitted step (same model, batch
size, optimizer, data and compilation); the bare loop is a hand-written Python loop that
draws shuffled batches from the same arrays and calls that step. The harness side runs a
real trial with evals pushed out of the way (one after step 1, one at the end) and counts
steps/s between those two evals from the charged submission time. Runs alternate
(bare, harness, bare, ...) so both see the same machine load; the ratio of medians is
reported (>= 0.98 is the goal).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from algoperf import jax_sharding_utils, registry
from algoperf.array_workload import shuffled_batches
from algoperf.runner.trial import TrialConfig, run_trial
from algoperf.runner.trial_log import read_evals
from algoperf.submission.loading import load_submission
from algoperf.submission.search_space import make_hyperparameters
from algoperf.workloads.mnist1d.workload import Mnist1dWorkload

NADAMW_POINT = json.loads((Path(__file__).resolve().parents[1] / "submissions" / "nadamw" / "tuning_search_space.json").read_text())[0]


class NoEvalMnist1d(Mnist1dWorkload):
    """mnist1d with periodic evals pushed out of the way and an unreachable target."""

    # A variant of mnist1d: the submission's mnist1d batch size (128), as in the bare loop.
    # (Unset, the name falls back to the reference workload 'mnist', batch size 16.)
    base_workload = "mnist1d"
    eval_period_time_sec = 1e9
    max_allowed_runtime_sec = 1e9
    validation_target_value = 2.0


def bare_loop(steps: int) -> float:
    """Steps/s of a hand-written loop around the same jitted step."""
    submission = load_submission("nadamw")
    workload = NoEvalMnist1d()
    hp = make_hyperparameters(NADAMW_POINT)
    batch_size = submission.get_batch_size("mnist1d")
    params, model_state = workload.init_model_fn(jax.random.PRNGKey(0))
    state, update = submission.init_optimizer_state(workload, params, model_state, hp, None)
    batches = shuffled_batches(workload.split_arrays("train"), batch_size, seed=0)
    step_fn = submission.module.train_step
    # A host-side raw key, as the runner hands out (a device key costs more to dispatch).
    rng = np.asarray(jax.random.PRNGKey(1))

    sharding = jax_sharding_utils.get_batch_dim_sharding()

    def one_step(state, params, model_state):
        batch = jax.device_put(next(batches), sharding)
        state, params, model_state, _, _ = step_fn(workload, update, state, params, model_state, batch, rng, 0.0, 0.0)
        return state, params, model_state

    state, params, model_state = jax.block_until_ready(one_step(state, params, model_state))  # compile
    begin = time.perf_counter()
    for _ in range(steps - 1):
        state, params, model_state = one_step(state, params, model_state)
    jax.block_until_ready(params)
    return (steps - 1) / (time.perf_counter() - begin)


def harness(steps: int, root: Path, index: int) -> float:
    """Steps/s of a real trial between its step-1 eval and its final eval."""
    config = TrialConfig(workload="mnist1d_noeval", submission="nadamw", hyperparameters=NADAMW_POINT,
                         experiment_dir=root, experiment_name=f"h{index}", max_steps=steps)
    run_trial(config)
    rows = read_evals(config.path)
    first, last = rows[0], rows[-1]
    return (last["global_step"] - first["global_step"]) / (last["accumulated_submission_time"] - first["accumulated_submission_time"])


def measure(steps: int = 3000, repeats: int = 3) -> dict:
    registry.register_workload("mnist1d_noeval", NoEvalMnist1d)
    bare, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            bare.append(bare_loop(steps))
            ours.append(harness(steps, Path(tmp), i))
    ratio = statistics.median(ours) / statistics.median(bare)
    return {"harness_overhead_ratio": ratio, "bare_steps_per_s": bare, "harness_steps_per_s": ours}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    out = measure(args.steps, args.repeats)
    print(f"harness overhead: {out['harness_overhead_ratio']:.3f} "
          f"(bare {statistics.median(out['bare_steps_per_s']):.0f} steps/s, "
          f"harness {statistics.median(out['harness_steps_per_s']):.0f} steps/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
