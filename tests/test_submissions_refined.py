"""The refined schedule (Defazio et al. 2023): its maths and where it finds the pilot run."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest

from algoperf.runner.trial import FAILED, TrialConfig, run_trial
from algoperf.submission.loading import load_submission
from algoperf.submission.search_space import make_hyperparameters


@functools.cache
def refined():
    return load_submission("refined").module


# --- the maths ----------------------------------------------------------------------------


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_constant_norms_give_exactly_linear_decay(power):
    multipliers = refined().refined_schedule(np.full(200, 3.7), power)
    np.testing.assert_allclose(multipliers, np.linspace(1.0, 0.0, 200), rtol=0, atol=1e-12)


def test_large_early_norms_give_a_warmup():
    # Norms that start 10x higher and fall to a plateau over the first 30 steps: u_t is small
    # early, so the schedule rises (a warmup) before it decays.
    norms = np.concatenate([np.linspace(10.0, 1.0, 30), np.ones(170)])
    multipliers = refined().refined_schedule(norms, 1.0)
    peak = int(np.argmax(multipliers))
    assert 15 <= peak <= 45
    assert multipliers[0] < 0.3
    assert np.all(np.diff(multipliers[: peak - 5]) >= 0)  # rising up to the peak
    assert np.all(np.diff(multipliers[peak + 5 :]) <= 0)  # then falling to 0
    assert multipliers[-1] == 0.0


def test_rising_norms_give_no_warmup():
    # The contrast: norms that grow from small values make u_t largest at the start.
    multipliers = refined().refined_schedule(np.linspace(1.0, 10.0, 100), 1.0)
    assert np.argmax(multipliers) == 0


def test_hand_computed_short_sequence():
    # Window round(0.1 * 4) -> 1: no filtering. s = [1, 2, 4, 2].
    # l2 (power 2): u = [1, 1/4, 1/16, 1/4], tails = [9/16, 5/16, 1/4, 0]
    #   w = [9/16, 5/64, 1/64, 0] -> / (9/16) = [1, 5/36, 1/36, 0]
    # l1 (power 1): u = [1, 1/2, 1/4, 1/2], tails = [5/4, 3/4, 1/2, 0]
    #   w = [5/4, 3/8, 1/8, 0] -> / (5/4) = [1, 3/10, 1/10, 0]
    s = [1.0, 2.0, 4.0, 2.0]
    np.testing.assert_allclose(refined().refined_schedule(s, 2.0), [1, 5 / 36, 1 / 36, 0], atol=1e-15)
    np.testing.assert_allclose(refined().refined_schedule(s, 1.0), [1, 0.3, 0.1, 0], atol=1e-15)


def test_median_filter_removes_a_spike():
    m = refined()
    np.testing.assert_array_equal(m.median_filter([1.0, 100.0, 2.0, 3.0], 3), [1.0, 2.0, 3.0, 3.0])
    smooth = np.linspace(5.0, 2.0, 100)
    spiky = smooth.copy()
    spiky[40] = 1e4
    np.testing.assert_allclose(m.refined_schedule(spiky, 2.0), m.refined_schedule(smooth, 2.0), rtol=0.02)


def test_bad_norms_are_refused():
    with pytest.raises(ValueError, match="positive"):
        refined().refined_schedule([1.0, np.nan, 2.0], 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        refined().refined_schedule([1.0], 1.0)


def test_horizon_fit_and_optax_schedule():
    m = refined()
    np.testing.assert_array_equal(m.fit_to_horizon(np.arange(1.0, 11.0), 4), [1, 2, 3, 4])
    # Extended flat at the median of the last 10% (one step here).
    np.testing.assert_array_equal(m.fit_to_horizon(np.arange(1.0, 11.0), 12), [*range(1, 11), 10, 10])
    schedule = m.learning_rate_schedule(np.array([1.0, 0.5, 0.0]), 0.2)
    assert [float(schedule(k)) for k in range(5)] == pytest.approx([0.2, 0.1, 0.0, 0.0, 0.0])


# --- finding the pilot run ------------------------------------------------------------------


def write_trial(root: Path, name: str, *, submission="linear_decay", workload="mnist1d", status="reached_target",
                norms=(3.0, 2.0, 1.0), mtime: float | None = None) -> Path:
    folder = root / name / f"{workload}_jax" / "trial_1"
    folder.mkdir(parents=True)
    with (folder / "submission_metrics.jsonl").open("w") as f:
        for step, value in enumerate(norms):
            f.write(json.dumps({"step": step, "name": "grad_norm_l1", "value": value}) + "\n")
            f.write(json.dumps({"step": step, "name": "grad_norm_l2", "value": value / 2}) + "\n")
    result = folder / "trial_result.json"
    result.write_text(json.dumps({"submission": submission, "workload": workload, "status": status}))
    if mtime is not None:
        os.utime(result, (mtime, mtime))
    return folder


@pytest.fixture
def no_tracking(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ALGOPERF_EXPERIMENT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)


def test_metrics_file_dedupes_resumed_steps_and_fills_gaps(tmp_path):
    path = tmp_path / "submission_metrics.jsonl"
    rows = [(0, 5.0), (1, 9.0), (1, 4.0), (3, 2.0)]  # step 1 twice (resumed), step 2 missing
    path.write_text("".join(json.dumps({"step": s, "name": "grad_norm_l1", "value": v}) + "\n" for s, v in rows))
    np.testing.assert_array_equal(refined().norms_from_metrics_file(tmp_path, "grad_norm_l1"), [5.0, 4.0, 3.0, 2.0])


def test_latest_usable_linear_decay_trial_is_found(tmp_path, no_tracking):
    root = tmp_path / "experiments"
    write_trial(root, "old", norms=(1.0, 1.0), mtime=1_000)
    newest = write_trial(root, "new", norms=(4.0, 3.0, 2.0), mtime=2_000)
    write_trial(root, "failed", status="failed", mtime=3_000)
    write_trial(root, "other_submission", submission="adamw", mtime=3_000)
    write_trial(root, "other_workload", workload="ctr", mtime=3_000)
    m = refined()
    assert m.find_pilot_trial([root], "mnist1d") == newest
    # Found under ./experiments (the CLI's default) without being told.
    norms, source = m.load_pilot_norms("mnist1d", None)
    np.testing.assert_array_equal(norms, [4.0, 3.0, 2.0])
    assert str(newest) in source
    # l2 norms on request.
    norms, _ = m.load_pilot_norms("mnist1d", make_hyperparameters({"norm": "l2"}))
    np.testing.assert_array_equal(norms, [2.0, 1.5, 1.0])


def test_pilot_named_by_hyperparameter_or_environment(tmp_path, no_tracking, monkeypatch):
    m = refined()
    elsewhere = write_trial(tmp_path / "elsewhere", "x", norms=(7.0, 6.0))
    norms, _ = m.load_pilot_norms("mnist1d", make_hyperparameters({"pilot_trial_dir": str(elsewhere)}))
    np.testing.assert_array_equal(norms, [7.0, 6.0])
    norms, _ = m.load_pilot_norms("mnist1d", make_hyperparameters({"pilot_experiment_dir": str(tmp_path / "elsewhere")}))
    np.testing.assert_array_equal(norms, [7.0, 6.0])
    monkeypatch.setenv("ALGOPERF_EXPERIMENT_DIR", str(tmp_path / "elsewhere"))
    norms, _ = m.load_pilot_norms("mnist1d", None)
    np.testing.assert_array_equal(norms, [7.0, 6.0])


def test_missing_pilot_fails_the_trial_with_the_run_to_do_first(tmp_path, no_tracking):
    m = refined()
    with pytest.raises(m.PilotRunNotFoundError) as info:
        m.load_pilot_norms("mnist1d", None)
    message = str(info.value)
    assert "algoperf run --submission linear_decay --workload mnist1d" in message
    assert "pilot_trial_dir" in message and "pilot_run_id" in message
    with pytest.raises(m.PilotRunNotFoundError, match="no such file"):
        m.load_pilot_norms("mnist1d", make_hyperparameters({"pilot_trial_dir": str(tmp_path / "nope")}))
    with pytest.raises(m.PilotRunNotFoundError, match="no tracking URI"):
        m.load_pilot_norms("mnist1d", make_hyperparameters({"pilot_run_id": "abc"}))
    # Through the runner: a failed trial (not a crash) whose error says what to run.
    point = json.loads((Path(m.__file__).parent / "tuning_search_space.json").read_text())[0]
    result = run_trial(TrialConfig(workload="mnist1d", submission="refined", hyperparameters=point, experiment_dir=tmp_path / "exp"))
    assert result.status == FAILED
    assert "PilotRunNotFoundError" in result.error and "--submission linear_decay" in result.error


# --- MLflow ------------------------------------------------------------------------------------


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A file-backed MLflow store (quick to create) with pilot runs logged as the tracker does."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("ALGOPERF_EXPERIMENT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    client = MlflowClient(uri)
    experiment = client.create_experiment("campaign")
    ids = {}
    for label, tags, norms, finished in [
        ("good", {"algoperf.status": "reached_target"}, [4.0, 3.0, 2.0], True),
        ("newer_failed", {"algoperf.status": "failed"}, [9.0, 9.0], True),
        ("newer_running", {}, [8.0, 8.0], False),
    ]:
        tags = {"algoperf.submission.loading": "linear_decay", "algoperf.workload": "mnist1d", **tags}
        run = client.create_run(experiment, tags=tags)
        client.log_batch(run.info.run_id, metrics=[Metric("grad_norm_l1", v, 0, s) for s, v in enumerate(norms)])
        if finished:
            client.set_terminated(run.info.run_id)
        ids[label] = run.info.run_id
    return uri, ids


def test_mlflow_latest_finished_pilot_and_named_run(mlflow_store, monkeypatch):
    uri, ids = mlflow_store
    m = refined()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    norms, source = m.load_pilot_norms("mnist1d", None)
    np.testing.assert_array_equal(norms, [4.0, 3.0, 2.0])
    assert ids["good"] in source
    norms, source = m.load_pilot_norms("mnist1d", make_hyperparameters({"pilot_run_id": ids["newer_running"]}))
    np.testing.assert_array_equal(norms, [8.0, 8.0])
    # A folder named by hyperparameter wins over the store found by default.
    folder = write_trial(Path.cwd() / "named", "x", norms=(7.0, 6.0)).parents[2]
    norms, _ = m.load_pilot_norms("mnist1d", make_hyperparameters({"pilot_experiment_dir": str(folder)}))
    np.testing.assert_array_equal(norms, [7.0, 6.0])
    # No pilot for another workload, in MLflow or on disk: the message names both places.
    with pytest.raises(m.PilotRunNotFoundError, match="MLflow at"):
        m.load_pilot_norms("ctr", None)
