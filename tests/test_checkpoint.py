"""Checkpoints: orbax round trip, log truncation, and a trial resumed in-process after a 'kill'."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf.runner import checkpoint
from algoperf.runner.checkpoint import (
    Checkpointer,
    CheckpointMismatchError,
    latest_step,
    truncate_trial_log,
)
from algoperf.runner.trial import run_trial
from algoperf.runner.trial_log import read_evals
from algoperf.runner.types import TrialConfig


def _update(grads, state, params):  # a function leaf, as (opt_state, update_fn) optimizer states hold
    return grads, state


def _trees(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "params": {"dense": {"kernel": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "bias": jnp.zeros(4)}},
        "optimizer_state": ({"mu": jnp.asarray(rng.normal(size=4), jnp.float32), "count": jnp.int32(seed)}, _update),
        "model_state": {"batch_stats": np.asarray(rng.normal(size=2)), "steps": seed, "name": "bn"},
        "rng": jax.random.PRNGKey(seed),
        "key": jax.random.key(seed),
    }


def test_round_trip_restores_arrays_and_keeps_non_array_leaves(tmp_path: Path) -> None:
    saved = _trees(7)
    ckpt = Checkpointer(tmp_path)
    ckpt.save(12, saved, {"global_step": 12, "evals": [[1, {"validation/loss": float("nan")}]]})
    ckpt.close()
    assert latest_step(tmp_path) == 12

    fresh = _trees(0)  # what a resumed trial initialises: same structure, other values
    reader = Checkpointer(tmp_path)
    restored, info = reader.restore(fresh)
    reader.close()
    assert info["global_step"] == 12 and np.isnan(info["evals"][0][1]["validation/loss"])
    for got, want in zip(jax.tree.leaves(restored["params"]), jax.tree.leaves(saved["params"]), strict=True):
        assert isinstance(got, jax.Array) and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    state, update_fn = restored["optimizer_state"]
    assert update_fn is _update  # not saved: taken from the fresh state
    np.testing.assert_array_equal(state["mu"], saved["optimizer_state"][0]["mu"])
    assert int(state["count"]) == 7
    assert restored["model_state"]["steps"] == 7 and isinstance(restored["model_state"]["steps"], int)
    assert restored["model_state"]["name"] == "bn"
    assert isinstance(restored["model_state"]["batch_stats"], np.ndarray)
    np.testing.assert_array_equal(restored["rng"], saved["rng"])
    np.testing.assert_array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(saved["key"]))
    # The restored key draws the same numbers as the saved one.
    np.testing.assert_array_equal(jax.random.uniform(restored["key"], (3,)), jax.random.uniform(saved["key"], (3,)))


def test_only_the_latest_complete_checkpoint_counts(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path)
    ckpt.save(1, {"rng": jax.random.PRNGKey(1)}, {"global_step": 1})
    ckpt.save(5, {"rng": jax.random.PRNGKey(5)}, {"global_step": 5})
    ckpt.close()
    # A save cut off by a kill leaves a temporary folder, never a bare step number.
    (checkpoint.checkpoint_dir(tmp_path) / "9.orbax-checkpoint-tmp-123").mkdir()
    assert latest_step(tmp_path) == 5
    assert sorted(p.name for p in checkpoint.checkpoint_dir(tmp_path).iterdir() if p.name.isdigit()) == ["5"]
    assert Checkpointer(tmp_path).read_info()["global_step"] == 5


def test_restore_refuses_a_tree_that_does_not_fit(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path)
    ckpt.save(3, {"params": {"w": jnp.zeros((2, 3))}}, {})
    ckpt.close()
    with pytest.raises(CheckpointMismatchError, match=r"float32\[2, 3\].*float32\[3, 3\]"):
        Checkpointer(tmp_path).restore({"params": {"w": jnp.zeros((3, 3))}})
    with pytest.raises(CheckpointMismatchError, match="holds 1 arrays, the fresh state has 2"):
        Checkpointer(tmp_path).restore({"params": {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}})


def test_truncate_drops_rows_after_the_checkpoint(tmp_path: Path) -> None:
    with (tmp_path / "eval_measurements.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["global_step", "score"])
        writer.writerows([[1, 0.5], [40, 2.0], [80, 4.0]])
        f.write("12")  # a row cut off mid-write by a kill
    (tmp_path / "submission_metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "name": "loss", "value": 1.0}) + "\n" for s in (0, 40, 60))
    )
    assert truncate_trial_log(tmp_path, 40) == 2
    assert [r["global_step"] for r in read_evals(tmp_path)] == [1.0, 40.0]
    lines = (tmp_path / "submission_metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 40]
    assert truncate_trial_log(tmp_path, 40) == 0  # idempotent


# --- a trial killed after logging an eval, before checkpointing it ------------------------
class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so run_trial does not record it."""


class KillAtStep:
    """An observer that 'kills' the trial at the first eval at or after ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_start(self, config, meta) -> None:
        pass

    def on_eval(self, global_step: int, row: dict) -> None:
        if global_step >= self.step:
            raise Killed

    def on_submission_metrics(self, rows) -> None:
        pass

    def on_end(self, result) -> None:
        pass


MAX_STEPS = 60


def _config(base: Path, name: str, point: dict, **kw) -> TrialConfig:
    return TrialConfig("mnist1d", "nadamw", point, seed=11, experiment_dir=base, experiment_name=name,
                       max_steps=MAX_STEPS, **kw)


def _eval_metrics(row: dict) -> dict:
    return {k: v for k, v in row.items() if k.split("/")[0] in ("train", "validation", "test")}


def test_killed_trial_resumes_bit_exact(tmp_path: Path, nadamw_point: dict) -> None:
    # Evals by step count, so that both runs evaluate at the same steps whatever the
    # machine's speed: then every eval's metrics must be equal, bit for bit (same
    # params at the same step: same batches, same keys, same state after the restore).
    baseline = run_trial(_config(tmp_path, "baseline", nadamw_point, checkpoints=False, eval_every_steps=20))
    assert not checkpoint.checkpoint_dir(_config(tmp_path, "baseline", nadamw_point).path).exists()

    config = _config(tmp_path, "killed", nadamw_point, eval_every_steps=20)
    with pytest.raises(Killed):
        run_trial(config, KillAtStep(MAX_STEPS))  # the final eval row is written, its checkpoint is not
    saved_step = latest_step(config.path)
    assert saved_step is not None and saved_step < MAX_STEPS
    assert read_evals(config.path)[-1]["global_step"] == MAX_STEPS  # a row the resume must drop

    # Another trial's checkpoint is refused before anything changes.
    other = _config(tmp_path, "killed", {**nadamw_point, "learning_rate": 0.5}, eval_every_steps=20)
    with pytest.raises(CheckpointMismatchError, match="hyperparameters"):
        run_trial(other)
    assert not (config.path / "meta_data_1.json").exists()

    resumed = run_trial(config)
    rows, base_rows = read_evals(config.path), read_evals(baseline.trial_dir)
    steps = [int(r["global_step"]) for r in rows]
    assert len(steps) == len(set(steps)) and steps == sorted(steps)
    assert resumed.global_step == baseline.global_step == MAX_STEPS
    assert steps == [int(r["global_step"]) for r in base_rows] == [1, 20, 40, 60]
    assert [_eval_metrics(r) for r in rows] == [_eval_metrics(r) for r in base_rows]
    assert resumed.best_validation == baseline.best_validation
    assert resumed.status == baseline.status
    assert [r["preemption_count"] for r in rows if r["global_step"] > saved_step] == [1.0] * sum(
        s > saved_step for s in steps
    )
    assert all(r["preemption_count"] == 0 for r in rows if r["global_step"] <= saved_step)
    # The accumulated times go on from the checkpoint's, never back.
    times = [r["accumulated_submission_time"] for r in rows]
    assert times == sorted(times)
    meta = json.loads((config.path / "meta_data_1.json").read_text())
    assert meta["preemption_count"] == 1 and meta["resumed_from_step"] == saved_step
    assert meta["resume"]["from_step"] == saved_step and meta["resume"]["data_position_restored"]
    logged = [json.loads(line) for line in (config.path / "submission_metrics.jsonl").read_text().splitlines()]
    pairs = [(m["step"], m["name"]) for m in logged]
    assert pairs and len(pairs) == len(set(pairs))


def test_killed_before_any_checkpoint_restarts_from_step_zero(tmp_path: Path, nadamw_point: dict) -> None:
    config = _config(tmp_path, "early", nadamw_point, checkpoints=False)
    config.max_steps = 3
    config.path.mkdir(parents=True)
    (config.path / "meta_data_0.json").write_text("{}")
    with (config.path / "eval_measurements.csv").open("w") as f:
        f.write("global_step,score\n1,0.1\n")
    result = run_trial(config)
    rows = read_evals(config.path)
    assert [r["global_step"] for r in rows] == [1.0, 3.0]
    assert all(r["preemption_count"] == 1 for r in rows) and "score" in rows[0]
    assert result.global_step == 3


class _PositionOnly:
    """A train stream that cannot seek, only say where it is and go back there (as WMT's)."""

    def __init__(self, queue):
        self._queue, self._taken, self.restored_to = queue, 0, None
        self._seek = queue.seek

    def __iter__(self):
        return self

    def __next__(self):
        self._taken += 1
        return next(self._queue)

    def position(self) -> dict:
        return {"taken": self._taken}

    def restore(self, position: dict) -> None:
        self.restored_to = position
        self._seek(position["taken"])
        self._taken = position["taken"]


@pytest.mark.slow  # three trials (~22 s); the fast tier checks CountingIterator's restore (test_runner_rules)
def test_a_stream_with_a_position_is_restored_to_it(tmp_path: Path, nadamw_point: dict, monkeypatch) -> None:
    """The checkpoint keeps the train stream's own position(); the resumed trial restores it
    (no seek, no draw-forward) and trains on the same batches: bit-exact evals."""
    from algoperf.workloads.mnist1d.workload import Mnist1dWorkload

    streams = []
    build = Mnist1dWorkload._build_input_queue

    def position_only(self, data_rng, split, *args, **kwargs):
        queue = build(self, data_rng, split, *args, **kwargs)
        if split == "train":
            queue = _PositionOnly(queue)
            streams.append(queue)
        return queue

    monkeypatch.setattr(Mnist1dWorkload, "_build_input_queue", position_only)
    baseline = run_trial(_config(tmp_path, "baseline", nadamw_point, checkpoints=False, eval_every_steps=20))
    config = _config(tmp_path, "killed", nadamw_point, eval_every_steps=20)
    with pytest.raises(Killed):
        run_trial(config, KillAtStep(MAX_STEPS))
    saved_step = latest_step(config.path)
    run_trial(config)
    assert streams[-1].restored_to == {"taken": saved_step}
    assert [_eval_metrics(r) for r in read_evals(config.path)] == [_eval_metrics(r) for r in read_evals(baseline.trial_dir)]
