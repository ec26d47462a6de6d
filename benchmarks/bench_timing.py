"""Timing accuracy: a submission that spends a known time per step against what it is charged.

    python benchmarks/bench_timing.py

The submission busy-waits (and, in a second run, sleeps) a fixed time per step and
measures the wall time it actually spent inside update_params; the workload adds a
fixed extra time to every eval. timing_error = |charged - spent| / spent, where the
difference is the runner's own per-step work. Any leak of the known eval time
(EXTRA per eval, several evals) would show as an error far above the 1% goal.

The runner's overhead is split in two by a second busy-wait run of 4x the steps: what it
adds per step (the slope, ``marginal_overhead_us_per_step``) and once per trial (the
intercept, ``fixed_overhead_ms``: the first batch, the first device waits). The older
``overhead_us_per_step`` spreads both over the steps of one run.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
import time
from pathlib import Path

from algoperf import registry
from algoperf.runner.trial import run_trial
from algoperf.runner.types import TrialConfig
from algoperf.submission.loading import load_submission
from algoperf.workloads.mnist1d.workload import Mnist1dWorkload

SOURCE = """
import time
STEP_SECONDS, BUSY, SPENT = {seconds}, {busy}, [0.0]
_batch = None
def get_batch_size(workload_name): return 32
def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng): return None
def update_params(workload, current_param_container, current_params_types, model_state,
                  hyperparameters, batch, loss_type, optimizer_state, eval_results, global_step, rng):
    begin = time.perf_counter()
    if BUSY:
        while time.perf_counter() < begin + STEP_SECONDS:
            pass
    else:
        time.sleep(STEP_SECONDS)
    SPENT[0] += time.perf_counter() - begin
    return optimizer_state, current_param_container, model_state
def data_selection(workload, input_queue, optimizer_state, current_param_container, model_state,
                   hyperparameters, global_step, rng):
    global _batch
    _batch = next(input_queue) if _batch is None else _batch
    return _batch
"""


class SlowEval(Mnist1dWorkload):
    eval_period_time_sec = 0.5
    EXTRA = 0.5

    def eval_model(self, *args, **kwargs):
        time.sleep(self.EXTRA)
        return super().eval_model(*args, **kwargs)


def _probe(tmp: str, name: str, busy: bool, steps: int, seconds: float) -> tuple[float, float, int]:
    """(charged s, spent s, evals) of one probe trial of ``steps`` steps."""
    folder = Path(tmp) / name
    folder.mkdir()
    (folder / "submission.py").write_text(textwrap.dedent(SOURCE.format(seconds=seconds, busy=busy)))
    sub = load_submission(folder)
    result = run_trial(TrialConfig(workload="mnist1d_slow_eval_bench", submission=folder,
                                   experiment_dir=tmp, experiment_name=name, max_steps=steps,
                                   # No checkpoints: the eval period is wall time since the
                                   # last eval ended, and a checkpoint slower than the period
                                   # would make every step an eval step.
                                   checkpoints=False), submission=sub)
    return result.accumulated_submission_time, sub.module.SPENT[0], result.num_evals


def measure(steps: int = 200, seconds: float = 0.01) -> dict:
    registry.register_workload("mnist1d_slow_eval_bench", SlowEval)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        long_charged, long_spent, _ = _probe(tmp, "busy_long", True, 4 * steps, seconds)
        for busy in (True, False):
            charged, spent, evals = _probe(tmp, f"sub_{busy}", busy, steps, seconds)
            kind = "busy" if busy else "sleep"
            out[f"{kind}_charged_s"] = charged
            out[f"{kind}_spent_s"] = spent
            out[f"{kind}_error"] = abs(charged - spent) / spent
            out[f"{kind}_charged_over_spent"] = charged / spent
            # What the runner itself adds per step (charged to the submission), in microseconds.
            out[f"{kind}_overhead_us_per_step"] = (charged - spent) / steps * 1e6
            out[f"{kind}_evals"] = evals
    short_overhead = out["busy_charged_s"] - out["busy_spent_s"]
    slope = ((long_charged - long_spent) - short_overhead) / (3 * steps)
    out["marginal_overhead_us_per_step"] = slope * 1e6
    out["fixed_overhead_ms"] = (short_overhead - slope * steps) * 1e3
    out["timing_error"] = out["busy_error"]
    out["charged_over_spent"] = out["busy_charged_over_spent"]
    out["overhead_us_per_step"] = out["busy_overhead_us_per_step"]
    return out


def main() -> int:
    out = measure()
    print(f"charged/spent (busy-wait probe): {out['charged_over_spent']:.4f}; runner overhead "
          f"{out['marginal_overhead_us_per_step']:.0f} us per step and {out['fixed_overhead_ms']:.1f} ms per trial "
          f"({out['overhead_us_per_step']:.0f} us/step over {200} steps)")
    print(f"timing error: busy-wait {out['busy_error']:.4f}, sleep {out['sleep_error']:.4f} "
          f"({out['busy_evals']} evals of +{SlowEval.EXTRA} s each, none charged: "
          f"charged {out['busy_charged_s']:.3f} s vs spent {out['busy_spent_s']:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
