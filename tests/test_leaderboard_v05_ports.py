"""The JAX ports of the PyTorch-only AlgoPerf v0.5 entries (submissions/leaderboard_v05/).

Each port's update is checked against a numpy transcription of the entry's equations (the
paper's update as the published PyTorch optimizer applies it) for a few steps on a tiny
least-squares problem; each runs a few steps of mnist1d through ``algoperf run``.
"""

from __future__ import annotations

import functools
import json
import math
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import registry, spec
from algoperf.submission.loading import load_submission
from algoperf.submission.search_space import make_hyperparameters
from tests.cli import run_algoperf

PORTS = ["schedule_free_adamw", "schedule_free_prodigy", "cyclic_lr", "lawa_ema", "lawa_queue"]
REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO.parent / "shared/data/algoperf_v05/submissions/external_tuning"


@functools.cache
def port(name: str):
    return load_submission(f"leaderboard_v05/{name}").module


class Quadratic:
    """mean((A w - t)^2) over a batch of 8: enough of a workload for update_params."""

    metrics_logger = None
    model_params_types = None

    def __init__(self, step_hint=20, max_allowed_runtime_sec=20.0, eval_period_time_sec=3.0):
        self.step_hint = step_hint
        self.max_allowed_runtime_sec = max_allowed_runtime_sec
        self.eval_period_time_sec = eval_period_time_sec

    def model_fn(self, params, batch, model_state, mode, rng, update_batch_norm, dropout_rate=None):
        return batch["inputs"] @ params["w"], model_state

    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing=0.0):
        return {"summed": jnp.sum((logits_batch - label_batch) ** 2), "n_valid_examples": label_batch.shape[0]}


def batch(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"inputs": rng.normal(size=(8, 3)).astype(np.float32), "targets": rng.normal(size=8).astype(np.float32)}


def grad(w: np.ndarray, b: dict) -> np.ndarray:
    a, t = b["inputs"].astype(np.float64), b["targets"].astype(np.float64)
    return 2.0 / len(t) * a.T @ (a @ w - t)


W0 = np.array([0.5, -1.0, 2.0])


def run_port(name, workload, hparams, calls, start=W0):
    """Call update_params ``calls`` times from ``start``; the params the runner holds after each call."""
    sub = port(name)
    hp = make_hyperparameters(hparams)
    params = {"w": jnp.asarray(start, jnp.float32)}
    state = sub.init_optimizer_state(workload, params, None, hp, jax.random.PRNGKey(0))
    batches = (batch(i) for i in range(10_000))
    seen = []
    for t in range(calls):
        data = sub.data_selection(workload, batches, state, params, None, hp, t, None)
        state, params, _ = sub.update_params(
            workload=workload, current_param_container=params, current_params_types=None, model_state=None,
            hyperparameters=hp, batch=data, loss_type=spec.LossType.MEAN_SQUARED_ERROR, optimizer_state=state,
            eval_results=[], global_step=t, rng=jax.random.PRNGKey(t),
        )
        seen.append(np.asarray(params["w"], np.float64))
    return seen


# --- the numpy references (the entries' PyTorch optimizers, step by step) ----------------


def sf_adamw_reference(steps, lr, warmup, b1, b2, wd, eps=1e-8, power=2.0, r=0.75):
    x, z, v, weight_sum, lr_max, out = W0.copy(), W0.copy(), np.zeros(3), 0.0, 0.0, []
    for k in range(steps):
        g = grad(b1 * x + (1 - b1) * z, batch(k))
        lr_k = max(lr * ((k + 1) / warmup if k < warmup else 1.0), eps)
        lr_max = max(lr_max, lr_k)
        weight = (k + 1) ** r * lr_max**power
        weight_sum += weight
        v = b2 * v + (1 - b2) * g * g
        step = lr_k * math.sqrt(1 - b2 ** (k + 1))
        z = z - step * g / (np.sqrt(v) + eps) - step * wd * x
        x = x + weight / weight_sum * (z - x)
        out.append(x.copy())
    return out


def sf_prodigy_reference(steps, step_hint, wd, start, b1=0.9, b2=0.9955, eps=1e-8, d=1e-6, r=0.75):
    x, z, x0, v, s = start.copy(), start.copy(), start.copy(), np.zeros(3), np.zeros(3)
    numerator, weight_sum, warmup, out = 0.0, 0.0, int(0.075 * step_hint), []
    for k in range(steps):
        lr = (k + 1) / warmup if k < warmup else 1.0
        g = grad(b1 * x + (1 - b1) * z, batch(k))
        dlr = d * lr
        numerator = numerator * math.sqrt(b2) + d * dlr * g @ (x0 - z)
        v = b2 * v + d * d * (1 - b2) * g * g
        s = math.sqrt(b2) * s + d * dlr * g
        d = max(d, numerator / np.abs(s).sum())
        weight_sum += (k + 1) ** r
        z = z - wd * dlr * x
        z = z - d * dlr * g / (np.sqrt(v) + d * eps)
        x = x + (k + 1) ** r / weight_sum * (z - x)
        out.append(x.copy())
    return out


def warm_cosine_reference(t, lr, warmup, horizon, cycles, lr_min=1e-10):
    """The entries' WarmCosine / WarmCosineCycles ``schedule(t)``."""
    a = horizon / cycles
    for phi in range(cycles):
        if t <= phi * a + warmup:
            return lr_min + (lr - lr_min) / warmup * (t - phi * a)
        if t <= (phi + 1) * a:
            return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos((t - warmup - phi * a) * math.pi / (a - warmup)))
    return lr_min


def nadamw_reference(steps, lr, warmup, horizon, cycles, b1, b2, wd, eps=1e-8):
    """The entries' NAdamW; the schedule is set after each step (step 0 runs at lr)."""
    p, m, v, out = W0.copy(), np.zeros(3), np.zeros(3), []
    for t in range(1, steps + 1):
        lr_t = lr if t == 1 else warm_cosine_reference(t - 1, lr, warmup, horizon, cycles)
        g = grad(p, batch(t - 1))
        p = p * (1 - lr_t * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr_t / (1 - b1**t) * (b1 * m + (1 - b1) * g) / (np.sqrt(v) / math.sqrt(1 - b2**t) + eps)
        out.append(p.copy())
    return out


# --- update rules ----------------------------------------------------------------------


def test_schedule_free_adamw_matches_the_entry_equations():
    hp = {"learning_rate": 0.05, "one_minus_beta1": 0.1, "beta2": 0.99, "weight_decay": 0.1, "warmup_factor": 0.2,
          "label_smoothing": 0.0, "dropout_rate": 0.0}
    got = run_port("schedule_free_adamw", Quadratic(step_hint=20), hp, 8)
    want = sf_adamw_reference(8, lr=0.05, warmup=4, b1=0.9, b2=0.99, wd=0.1)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    assert not np.allclose(got[-1], W0, atol=1e-2)  # it moved


def test_schedule_free_prodigy_matches_the_entry_equations():
    # From 0: x stays small while d grows from 1e-6, so float32 keeps its relative precision.
    start = np.zeros(3)
    got = run_port("schedule_free_prodigy", Quadratic(step_hint=80), {"weight_decay": 0.1}, 10, start=start)
    want = sf_prodigy_reference(10, step_hint=80, wd=0.1, start=start)
    scale = np.abs(want).max()
    np.testing.assert_allclose(np.array(got) / scale, np.array(want) / scale, rtol=0, atol=1e-5)
    assert np.abs(got[-1]).max() > 5 * np.abs(got[0]).max()  # d grew from 1e-6: the steps grew


@pytest.mark.parametrize("cycles", [1, 2, 3])
@pytest.mark.parametrize("warmup", [0, 3])
def test_cyclic_schedule_matches_the_entry_schedulers(cycles, warmup):
    from algoperf.submissions.leaderboard_v05 import nadamw

    schedule = nadamw.warm_cosine(0.01, warmup, 25, cycles)
    for t in range(0, 31):
        want = 0.01 if t == 0 else warm_cosine_reference(t, 0.01, warmup, 25, cycles)
        assert float(schedule(t)) == pytest.approx(want, rel=1e-5, abs=1e-9), t


@pytest.mark.parametrize("cycles", [1, 2])
def test_cyclic_lr_matches_the_entry_nadamw(cycles):
    hp = {"learning_rate": 0.05, "one_minus_beta1": 0.1, "beta2": 0.99, "weight_decay": 0.1, "warmup_factor": 0.2,
          "cycles": cycles, "label_smoothing": 0.0, "dropout_rate": 0.0}
    got = run_port("cyclic_lr", Quadratic(step_hint=10), hp, 12)
    want = nadamw_reference(12, lr=0.05, warmup=2, horizon=10, cycles=cycles, b1=0.9, b2=0.99, wd=0.1)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


LAWA = {"learning_rate": 0.05, "one_minus_beta1": 0.1, "beta2": 0.99, "weight_decay": 0.1, "warmup_factor": 0.1,
        "label_smoothing": 0.0, "dropout_rate": 0.0, "lawa_start_factor": 0.1, "lawa_inner_steps_frac": 1.0}


def lawa_reference(calls, steps_per_call, start, interval, combine):
    """Train NAdamW straight through; after each call the runner sees combine(snapshots) or theta."""
    thetas = nadamw_reference(calls * steps_per_call, 0.05, 2, 20, 1, 0.9, 0.99, 0.1)
    shown = []
    for c in range(calls):
        end = (c + 1) * steps_per_call
        snaps = [thetas[j] for j in range(start, end, interval)]
        avg = combine(snaps)
        shown.append(thetas[end - 1] if avg is None else avg)
    return shown


@pytest.mark.parametrize("lawa_beta", [0.2, 1.0])
def test_lawa_ema_matches_the_entry(lawa_beta):
    """step_hint 20, 1 s per step, evals every 3 s: 3 steps per call; start 2, interval 2."""
    hp = {**LAWA, "lawa_interval_scaling": 0.1, "lawa_beta": lawa_beta}
    got = run_port("lawa_ema", Quadratic(), hp, 5)
    beta = int(lawa_beta)  # the entry's int(): 0.2 -> 0, the latest snapshot

    def ema(snaps):
        if not snaps:
            return None
        avg = snaps[0]
        for s in snaps[1:]:
            avg = beta * avg + (1 - beta) * s
        return avg

    want = lawa_reference(5, 3, start=2, interval=2, combine=ema)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    if lawa_beta == 1.0:  # an EMA that never moves: the runner keeps seeing the first snapshot
        np.testing.assert_allclose(got[-1], got[0], rtol=1e-6)


def test_lawa_queue_matches_the_entry():
    hp = {**LAWA, "lawa_interval_scaling": 0.1, "k": 3}
    got = run_port("lawa_queue", Quadratic(), hp, 6)
    want = lawa_reference(6, 3, start=2, interval=2,
                          combine=lambda snaps: np.mean(snaps[-3:], axis=0) if len(snaps) >= 3 else None)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    # Until three snapshots exist (steps 2, 4, 6) the runner sees the training iterate.
    assert not np.allclose(got[-1], nadamw_reference(18, 0.05, 2, 20, 1, 0.9, 0.99, 0.1)[-1])


def test_lawa_plan_from_the_workload_budget():
    from algoperf.submissions.leaderboard_v05 import lawa

    hp = make_hyperparameters({"lawa_start_factor": 0.02, "lawa_interval_scaling": 0.005, "lawa_inner_steps_frac": 0.25,
                               "lawa_beta": 0.2})
    # mnist1d's budget: 60 s, evals every 5 s, step_hint 2000 -> 166.7 steps per eval.
    p = lawa.plan(Quadratic(step_hint=2000, max_allowed_runtime_sec=60.0, eval_period_time_sec=5.0), hp, queue=False)
    assert (p.start, p.interval, p.steps_per_call, p.beta) == (40, 10, 42, 0.0)
    assert [lawa.snapshots_before(p, s) for s in (40, 41, 50, 51)] == [0, 1, 1, 2]


# --- loading, search spaces, names ------------------------------------------------------


@pytest.mark.parametrize("name", PORTS)
def test_port_loads_with_search_space_and_readme(name):
    sub = load_submission(f"leaderboard_v05/{name}")
    folder = REPO / "submissions/leaderboard_v05" / name
    points = json.loads((folder / "tuning_search_space.json").read_text())
    assert isinstance(points, list) and len(points) == 5
    readme = (folder / "README.md").read_text()
    assert "Differences" in readme and "external_tuning/" + name in readme
    assert sub.module.__file__ == str(folder / "submission.py")
    if PUBLISHED.is_dir():  # the search space is the entry's, value for value
        assert points == json.loads((PUBLISHED / name / "tuning_search_space.json").read_text())


@pytest.mark.parametrize("name", PORTS)
def test_port_batch_sizes_are_the_entry_table(name):
    sub = port(name)
    assert sub.get_batch_size("wmt") == 128
    with pytest.raises(ValueError, match="Unsupported workload"):
        sub.get_batch_size("mnist1d")  # the runner scales the reference workload's size instead


def test_nested_builtin_names_resolve_and_never_shadow_the_top_level_ones():
    names = registry.submission_names()
    assert {f"leaderboard_v05/{n}" for n in PORTS} <= set(names)
    assert "schedule_free_adamw" in names
    nested = registry.resolve_submission("leaderboard_v05/schedule_free_adamw")
    assert nested != registry.resolve_submission("schedule_free_adamw")
    assert nested == registry.resolve_submission(REPO / "submissions/leaderboard_v05/schedule_free_adamw")
    assert registry.builtin_submission_name(nested) == "leaderboard_v05/schedule_free_adamw"
    assert registry.builtin_submission_name(nested.parent) == "leaderboard_v05/schedule_free_adamw"
    assert registry.builtin_submission_name(REPO / "pyproject.toml") is None
    with pytest.raises(registry.UnknownNameError):
        registry.resolve_submission("leaderboard_v05/../adamw")


def test_ray_worker_gets_the_nested_name_and_resolves_it():
    from algoperf.campaign import ray_executor

    file = registry.resolve_submission("leaderboard_v05/lawa_queue")
    assert ray_executor._builtin_name(str(file), registry) == "leaderboard_v05/lawa_queue"
    top = registry.resolve_submission("schedule_free_adamw")
    assert ray_executor._builtin_name(str(top), registry) == "schedule_free_adamw"
    # What the worker does with the name it receives:
    assert load_submission("leaderboard_v05/lawa_queue").module.__file__ == str(file)


def test_leaderboard_campaign_finds_every_port():
    from algoperf.leaderboards import campaign

    for name in PORTS:
        folder = campaign.entry_folder(name, None)
        assert folder is not None and registry.builtin_submission_name(folder) == f"leaderboard_v05/{name}"


# --- through the CLI ------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_algoperf(*args, cwd=cwd, timeout=600)


# Each port's update rule is checked by hand above; one port runs through the CLI in the fast
# tier, the other four in the slow tier (make test-all).
@pytest.mark.parametrize("name", [n if n == "cyclic_lr" else pytest.param(n, marks=pytest.mark.slow) for n in PORTS])
def test_port_runs_mnist1d_through_algoperf_run(name, tmp_path):
    first = json.dumps(json.loads((REPO / "submissions/leaderboard_v05" / name / "tuning_search_space.json").read_text())[0])
    proc = cli("run", "--submission", f"submissions/leaderboard_v05/{name}", "--workload", "mnist1d",
               "--hparams", first, "--max-steps", "3", "--no-tracking", "--executor", "local",
               "--experiment-dir", str(tmp_path), "--json", cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = list(tmp_path.rglob("trial_result.json"))
    assert len(results) == 1
    result = json.loads(results[0].read_text())
    assert result["global_step"] == 3
    evals = list(tmp_path.rglob("eval_measurements.csv"))
    assert evals and "validation/accuracy" in evals[0].read_text()


def test_hparams_takes_inline_json_before_a_path(tmp_path):
    long_inline = json.dumps({"learning_rate": 0.001, **{f"unused_{i}": i for i in range(40)}})  # > a file name's length
    proc = cli("run", "--submission", "adamw", "--workload", "no_such_workload", "--hparams", long_inline,
               "--no-tracking", "--experiment-dir", str(tmp_path), cwd=tmp_path)
    assert "--hparams" not in proc.stdout + proc.stderr  # the JSON parsed; the workload is what fails
    assert proc.returncode != 0 and "no_such_workload" in proc.stdout + proc.stderr
    proc = cli("run", "--submission", "adamw", "--workload", "mnist1d", "--hparams", "{not json",
               "--no-tracking", "--experiment-dir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode != 0 and "neither inline JSON" in proc.stdout + proc.stderr
    bad_file = tmp_path / "point.json"
    bad_file.write_text("{oops")
    proc = cli("run", "--submission", "adamw", "--workload", "mnist1d", "--hparams", str(bad_file),
               "--no-tracking", "--experiment-dir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode != 0 and "not valid JSON" in proc.stdout + proc.stderr
