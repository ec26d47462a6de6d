"""Per-step cost of the pmap adapter (algoperf.compat.pmap_adapter) on mnist1d.

    python benchmarks/bench_pmap_adapter.py [--steps 300] [--repeats 3]

The v0.5-style test submission (tests/fixtures/v05_pmap) trains mnist1d two ways, with
the same jitted pmap step, data and state:

* adapter: through the adapter, as the runner calls it (global batches as the input
  queue yields them, the params it returned passed back);
* bare: the submission's own update_params called the way v0.5's runner called it
  (params already replicated, batches already shaped (devices, per-device, ...) before
  the clock runs).

Figures: the adapter's own host time per step (time in the adapter minus time in the
submission's function, median over steps) and the wall time per step of both loops
(blocked at the end of each run; runs alternate, medians of the repeats).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import numpy as np

from algoperf import registry
from algoperf.runner.trial import _replicated
from algoperf.submission import load_submission
from algoperf.submission.search_space import make_hyperparameters

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "v05_pmap"


def _setup():
    workload = registry.get_workload("mnist1d")
    submission = load_submission(FIXTURE)
    hp = make_hyperparameters(json.loads((FIXTURE / "tuning_search_space.json").read_text())[0])
    rng = jax.random.PRNGKey(0)
    params, model_state = _replicated(workload.init_model_fn(rng))
    optimizer_state = _replicated(submission.init_optimizer_state(workload, params, model_state, hp, rng))
    queue = workload._build_input_queue(rng, "train", None, 128)
    return workload, submission, hp, params, model_state, optimizer_state, queue


def _run_adapter(ctx, steps: int) -> tuple[float, list[float]]:
    workload, submission, hp, params, model_state, optimizer_state, queue = ctx
    adapter = submission.update_params.__self__
    inner, inner_times = adapter._update, []

    def timed_inner(**kwargs):
        t = time.perf_counter()
        out = inner(**kwargs)
        inner_times.append(time.perf_counter() - t)
        return out

    adapter._update = timed_inner
    overheads = []
    batches = [next(queue) for _ in range(steps)]
    rng = np.zeros(2, np.uint32)
    start = time.perf_counter()
    for step, batch in enumerate(batches):
        t = time.perf_counter()
        optimizer_state, params, model_state = submission.update_params(
            workload=workload, current_param_container=params, current_params_types=None, model_state=model_state,
            hyperparameters=hp, batch=batch, loss_type=None, optimizer_state=optimizer_state, eval_results=[],
            global_step=step + 1, rng=rng)
        overheads.append(time.perf_counter() - t - inner_times[-1])
    jax.block_until_ready(params)
    adapter._update = inner
    return (time.perf_counter() - start) / steps, overheads


def _run_bare(ctx, steps: int) -> float:
    workload, submission, hp, params, model_state, optimizer_state, queue = ctx
    adapter = submission.update_params.__self__
    params, model_state = adapter._replicated_state(params, model_state)
    optimizer_state = adapter._split_layout(optimizer_state)
    batches = [adapter._batch_per_device(next(queue)) for _ in range(steps)]
    jax.block_until_ready(batches)
    rng = np.zeros(2, np.uint32)
    start = time.perf_counter()
    for step, batch in enumerate(batches):
        optimizer_state, params, model_state = submission.module.update_params(
            workload, params, None, model_state, hp, batch, None, optimizer_state, [], step + 1, rng)
    jax.block_until_ready(params)
    return (time.perf_counter() - start) / steps


def measure(steps: int = 300, repeats: int = 3) -> dict:
    ctx = _setup()
    _run_adapter(ctx, 5), _run_bare(ctx, 5)  # compile both paths
    adapter_s, bare_s, overheads = [], [], []
    for _ in range(repeats):
        per_step, over = _run_adapter(ctx, steps)
        adapter_s.append(per_step)
        overheads += over[5:]
        bare_s.append(_run_bare(ctx, steps))
    return {
        "devices": jax.device_count(),
        "steps": steps,
        "repeats": repeats,
        "adapter_host_us_per_step_median": round(statistics.median(overheads) * 1e6, 1),
        "adapter_ms_per_step": round(statistics.median(adapter_s) * 1e3, 3),
        "bare_pmap_ms_per_step": round(statistics.median(bare_s) * 1e3, 3),
        "ratio_bare_over_adapter": round(statistics.median(bare_s) / statistics.median(adapter_s), 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(args.steps, args.repeats), indent=2))
