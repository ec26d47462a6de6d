"""Scheduling efficiency: N short trials on a local Ray with K slots, ideal against real makespan.

    python benchmarks/bench_scheduling.py [--trials 8] [--max-steps 500]

An embedded Ray (``algoperf.campaign.ray_executor.connect``, sized to this machine; its start-up is
timed and reported apart) runs a campaign of N nadamw trials on mnist1d (the tuning
campaign's first N search-space points, a fixed --max-steps) through
``algoperf.campaign.ray_executor.run_campaign`` with ``--hardware cpu:1``, tracking off: K = the
machine's usable cores slots, each trial in a fresh worker process pinned to a core of
its own.

What a trial's time is. Every trial needs its own process, so its time counts from that
process's creation (read in the worker from /proc: fork, Python, Ray worker start-up, the
import of the trial runner and JAX) to the trial's end (``on_end``: its log is written);
this includes the core pinning, hardware check, submission load and data/model/optimizer
init, which the trial log's ``total_duration`` (the timed loop with its evals) leaves
out. A wait for the core (the slot's previous trial process still exiting) is the
scheduler's, not the trial's, and so is any part of a process's life before its slot
was free (a worker started early). Then::

    ideal makespan     = sum over trials of their time / K
    real makespan      = last trial end - first trial process start (Ray start excluded)
    packing_efficiency = ideal / real                       (goal >= 0.95)

so the figure counts what the scheduler wastes: gaps between one trial's end and the next
trial's start on a slot, and idle slots at the start and tail. Whole trials cannot be
split, so the tail of N uneven trials on K slots is partly unavoidable: the best makespan
a scheduler knowing every duration in advance could reach is reported beside it.

Timestamps come from a small recorder passed as the campaign's observer factory (the
scheduler's own hook), which notes when Ray unpickled the task's arguments (the task
began), the wait in ``pin_cores`` (wrapped in the worker when the recorder is
unpickled), when the factory was called (hardware checked), ``on_start`` (submission
loaded), the trial clock's start (from its first eval row) and ``on_end``. Where the slot
time went, phase by phase, and the efficiency counting only the timed loop are reported
too.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _process_started_at() -> float:
    """Wall-clock time (time.time()) at which this process was created (10 ms resolution)."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return time.time() - (uptime - start_ticks / ticks)


@dataclass
class _Recorder:
    """A trial observer that notes wall-clock times and writes them to ``<folder>/<trial>.json``."""

    path: Path
    times: dict[str, Any]

    def on_start(self, config: Any, meta: dict[str, Any]) -> None:
        self.times["on_start"] = time.time()
        self.times["pinned_cpus"] = meta.get("scheduler", {}).get("pinned_cpus")
        self.times["pid"] = os.getpid()

    def on_eval(self, global_step: int, row: dict[str, float]) -> None:
        if "train_start" not in self.times:  # the clock started row['total_duration'] ago
            self.times["train_start"] = time.time() - row["total_duration"]

    def on_submission_metrics(self, rows: list[tuple[int, str, float]]) -> None:
        pass

    def on_end(self, result: Any) -> None:
        self.times.update(end=time.time(), total_duration=result.total_duration, status=result.status,
                          global_step=result.global_step)
        self.path.write_text(json.dumps(self.times))


@dataclass
class TimelineFactory:
    """The campaign's observer factory: one _Recorder per trial, in the trial's process.

    Unpickling it is the first thing the Ray worker does for the task (task arguments are
    deserialized just before the task runs), so ``__setstate__`` marks the task's start;
    it also wraps this process's ``algoperf.campaign.ray_executor.pin_cores`` (the task looks it up
    when it calls it, right after) to time the wait for a free core.
    """

    folder: str
    times: dict[str, Any] = field(default_factory=dict, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from algoperf.campaign import ray_executor as scheduler

        self.folder, self.times = state["folder"], {"task_start": time.time()}
        pin, times = scheduler.pin_cores, self.times

        def timed_pin(*args: Any, **kwargs: Any) -> Any:
            times["pin_begin"] = time.time()
            try:
                return pin(*args, **kwargs)
            finally:
                times["pin_end"] = time.time()

        scheduler.pin_cores = timed_pin

    def __call__(self, config: Any) -> _Recorder:
        times = {**self.times, "process_start": _process_started_at(), "factory": time.time()}
        return _Recorder(Path(self.folder) / f"{config.trial_index}.json", times)


PROC_CLOCK_S = 0.05  # a process start time read from /proc is good to about 2 clock ticks

# The phases of a trial, between its recorded marks. The worker imports the trial runner
# (and so JAX) before it pins its core: that import is in the first phase.
PHASES = (
    ("process_start_and_imports", "process_start", "pin_begin"),
    ("waiting_for_core", "pin_begin", "pin_end"),
    ("imports_and_hardware_check", "pin_end", "factory"),
    ("submission_load_and_meta", "factory", "on_start"),
    ("data_model_optimizer_init", "on_start", "train_start"),
    ("timed_loop_with_evals", "train_start", "end"),
)


def best_makespan(spans: list[float], slots: int) -> float:
    """The shortest makespan of whole trials of these durations on ``slots`` slots, had
    their durations been known in advance (branch and bound; longest first)."""
    order = sorted(spans, reverse=True)
    best = [sum(order)]

    def place(i: int, loads: list[float]) -> None:
        if max(loads) >= best[0]:
            return
        if i == len(order):
            best[0] = max(loads)
            return
        tried = set()
        for k in range(slots):
            if loads[k] in tried:  # slots with equal load are interchangeable
                continue
            tried.add(loads[k])
            loads[k] += order[i]
            place(i + 1, loads)
            loads[k] -= order[i]

    place(0, [0.0] * slots)
    return best[0]


def analyse(records: list[dict[str, Any]], slots: int) -> dict[str, Any]:
    """Makespans, efficiency and where the slot time went, from the per-trial timestamps.

    A slot is a core (each trial records the core it pinned). A trial may use its slot
    from ``avail`` = its process start, or the end of the slot's previous trial if its
    process started earlier (a worker Ray started before the slot was free), to its end;
    time in that window spent waiting for the core (the previous trial's process still
    exiting) is the scheduler's, not the trial's::

        span_i = end_i - avail_i - (wait for the core after avail_i)
        gap_i  = avail_i - end of the slot's previous trial + (that wait)
    """
    first = min(r["process_start"] for r in records)
    last = max(r["end"] for r in records)
    real = last - first
    by_core: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_core.setdefault((r["pinned_cpus"] or [-1])[0], []).append(r)
    gaps, early = [], []
    for held in by_core.values():
        held.sort(key=lambda r: r["end"])
        previous_end = None
        for r in held:
            r["avail"] = r["process_start"] if previous_end is None else max(r["process_start"], previous_end)
            r["core_wait"] = max(0.0, r["pin_end"] - max(r["pin_begin"], r["avail"]))
            if previous_end is not None:
                gaps.append(r["avail"] - previous_end + r["core_wait"])
            early.append(r["avail"] - r["process_start"])
            previous_end = r["end"]
    spans = [r["end"] - r["avail"] - r["core_wait"] for r in records]
    phases = {name: [r[b] - r[a] for r in records] for name, a, b in PHASES}
    # The same phases clipped to [avail, end]: what each took of its slot's time.
    held_time = {name: [max(0.0, r[b] - max(r[a], r["avail"])) for r in records] for name, a, b in PHASES}
    # Most trial processes alive at once: above K means workers started before a slot was free
    # (a start up to PROC_CLOCK_S before an end counts as after it: /proc's clock is coarse).
    events = sorted([(r["process_start"] + PROC_CLOCK_S, 1) for r in records] + [(r["end"], -1) for r in records])
    alive = peak = 0
    for _, step in events:
        alive += step
        peak = max(peak, alive)
    slot_time = slots * real
    share = {name: sum(v) / slot_time for name, v in held_time.items() if name != "waiting_for_core"}
    return {
        "packing_efficiency": sum(spans) / slots / real,
        "train_only_efficiency": sum(held_time["timed_loop_with_evals"]) / slots / real,
        "ideal_makespan_s": sum(spans) / slots,
        "real_makespan_s": real,
        # Whole trials cannot be split: the tail a perfect scheduler knowing every
        # duration in advance would still leave.
        "best_whole_trial_makespan_s": best_makespan(spans, slots) if len(spans) <= 16 else None,
        "packing_efficiency_vs_best": best_makespan(spans, slots) / real if len(spans) <= 16 else None,
        "trial_span_s": spans,
        "mean_phase_s": {k: statistics.mean(v) for k, v in phases.items()},
        # Shares of K x real makespan (they add up to 1).
        "slot_time_share": {
            **share,
            "gaps_between_trials": sum(gaps) / slot_time,
            "idle_at_start_and_tail": 1.0 - (sum(spans) + sum(gaps)) / slot_time,
        },
        "gaps_between_trials_s": gaps,
        "started_before_slot_free_s": early,
        "cores_used": sorted(by_core),
        "max_trial_processes_alive": peak,
    }


def measure(trials: int = 8, max_steps: int = 500) -> dict[str, Any]:
    import ray

    from algoperf.campaign import ray_executor as scheduler

    os.environ.pop("RAY_ADDRESS", None)  # this machine's embedded Ray, never a cluster named elsewhere
    begin = time.perf_counter()
    started = scheduler.connect()  # before JAX in this process, as the CLI does
    ray_start = time.perf_counter() - begin
    slots = int(ray.cluster_resources()["CPU"])
    try:
        from rich.console import Console

        from algoperf.campaign.plan import plan_trials
        from algoperf.submission.loading import load_submission

        # The recorder must reach the workers even when this file is imported as a module.
        if __name__ != "__main__":  # (a __main__ module is pickled by value anyway)
            ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "timeline"
            folder.mkdir()
            configs = plan_trials(load_submission("nadamw"), ["mnist1d"], trials=trials, max_steps=max_steps,
                                  experiment_dir=tmp, experiment_name="sched")
            begin = time.perf_counter()
            outcomes = scheduler.run_campaign(configs, hardware="cpu:1", observer_factory=TimelineFactory(str(folder)),
                                              console=Console(file=io.StringIO()), live=False)
            driver_wall = time.perf_counter() - begin
            bad = [f"{o.config.trial_index}: {o.state} {o.error or ''}" for o in outcomes if o.state != "finished"]
            if bad:
                raise RuntimeError(f"trials did not finish: {'; '.join(bad)}")
            records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    finally:
        if started:
            ray.shutdown()
    out = analyse(records, slots)
    out.update(trials=trials, slots=slots, max_steps=max_steps, ray_start_s=ray_start,
               run_campaign_wall_s=driver_wall,
               trial_total_duration_s=[r["total_duration"] for r in records],
               statuses=sorted({r["status"] for r in records}))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=500)
    args = parser.parse_args()
    out = measure(args.trials, args.max_steps)
    share = out["slot_time_share"]
    print(f"packing efficiency: {out['packing_efficiency']:.3f} ({out['trials']} trials on {out['slots']} slots: "
          f"ideal {out['ideal_makespan_s']:.1f} s, real {out['real_makespan_s']:.1f} s, best with whole trials "
          f"{out['best_whole_trial_makespan_s']:.1f} s; Ray start {out['ray_start_s']:.1f} s apart); "
          "slot time: " + ", ".join(f"{k} {v:.0%}" for k, v in share.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
