"""`algoperf score --experiment`: a campaign scored from MLflow alone, and the scores
logged back onto it as a `score` run.

The campaign is built without training: two hand-written log trees, one in AlgoPerf's
published layout (`adamw/study_<k>/...`, no metadata) and one in ours
(`nadamw_external/study_<k>/...` whose meta_data_0.json records submission `nadamw`), are
imported into a throwaway SQLite store with `algoperf.tracking.import_logs`.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType
from typer.testing import CliRunner

from algoperf.cli import app
from algoperf.scoring.logs import read_logs
from algoperf.tracking import import_logs, read_campaign
from algoperf.tracking.server import free_port

TARGETS = {
    "benchmark_version": "0.6",
    "base_workloads": ["wa", "wb"],
    "workloads": {
        "wa": {
            "target_metric_name": "accuracy",
            "validation_target_value": 0.9,
            "max_allowed_runtime_sec": 1000,
        },
        "wb": {
            "target_metric_name": "loss",
            "validation_target_value": 0.5,
            "max_allowed_runtime_sec": 2000,
        },
    },
}
INF = math.inf
# submission -> workload -> [[trial times to target of study 0], [study 1]] (inf: a miss)
TIMES = {
    "adamw": {"wa": [[100.0, 140.0], [120.0, INF]], "wb": [[300.0, 260.0], [INF, INF]]},
    "nadamw": {"wa": [[200.0, 180.0], [150.0, 210.0]], "wb": [[100.0, 90.0], [130.0, 110.0]]},
}
BOOT = ["--bootstrap", "200", "--seed", "3"]


def _write_trial(folder: Path, t: float, workload: str, meta: dict | None) -> None:
    """Evals at t/2, t, 2t (10, 20, 30 s for a miss); the target is first reached at t."""
    spec = TARGETS["workloads"][workload]
    metric, target = spec["target_metric_name"], spec["validation_target_value"]
    sign = 1.0 if metric == "accuracy" else -1.0
    bad, good = target - sign * 0.1, target + sign * 0.05
    times, values = (
        ([10.0, 20.0, 30.0], [bad] * 3) if math.isinf(t) else ([t / 2, t, 2 * t], [bad, good, good])
    )
    folder.mkdir(parents=True)
    lines = [f"accumulated_submission_time,global_step,validation/{metric},train/{metric}"]
    lines += [
        f"{s!r},{100 * (i + 1)},{v!r},{v!r}"
        for i, (s, v) in enumerate(zip(times, values, strict=True))
    ]
    (folder / "eval_measurements.csv").write_text("\n".join(lines) + "\n")
    if meta is not None:
        (folder / "meta_data_0.json").write_text(json.dumps(meta))


def _write_campaign(root: Path) -> None:
    for sub, folder, ours in (("adamw", "adamw", False), ("nadamw", "nadamw_external", True)):
        for workload, studies in TIMES[sub].items():
            for k, trials in enumerate(studies):
                for n, t in enumerate(trials, start=1):
                    meta = (
                        {
                            "submission": sub,
                            "submission_hash": "h",
                            "ruleset": "external",
                            "workload": workload,
                            "study": k,
                            "trial": n,
                        }
                        if ours
                        else None
                    )
                    _write_trial(
                        root / folder / f"study_{k}" / f"{workload}_jax" / f"trial_{n}",
                        t,
                        workload,
                        meta,
                    )


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> SimpleNamespace:
    base = tmp_path_factory.mktemp("campaign")
    root = base / "logs"
    _write_campaign(root)
    targets = base / "targets.json"
    targets.write_text(json.dumps(TARGETS))
    uri = f"sqlite:///{base / 'mlflow.db'}"
    report = import_logs(root, uri)
    assert sorted(report.experiments) == ["adamw", "nadamw_external"] and report.trials == 16
    return SimpleNamespace(
        root=root, targets=targets, uri=uri, experiments=["adamw", "nadamw_external"]
    )


def _score(c: SimpleNamespace, *args: str):
    return CliRunner().invoke(app, ["score", "--targets", str(c.targets), *args])


def _scored(result) -> dict:
    assert result.exit_code == 0, result.output
    (ruleset,) = json.loads(result.stdout)["rulesets"]
    return {s["name"]: s for s in ruleset["submissions"]}


def _from_mlflow(c: SimpleNamespace, *args: str):
    experiments = [a for name in c.experiments for a in ("--experiment", name)]
    return _score(c, *experiments, "--tracking-uri", c.uri, *args)


def _score_runs(client: MlflowClient, experiment: str, view=ViewType.ACTIVE_ONLY) -> list:
    eid = client.get_experiment_by_name(experiment).experiment_id
    return client.search_runs([eid], "tags.`algoperf.kind` = 'score'", run_view_type=view)


def test_our_folders_score_under_the_submission_they_record(campaign, tmp_path):
    warnings: list[str] = []
    from_files = read_logs(campaign.root, warn=warnings.append)
    assert sorted({r.submission for r in from_files}) == ["adamw", "nadamw"]  # not nadamw_external
    assert not warnings
    # ... which is what MLflow's algoperf.submission.loading tag says
    assert {r.submission for r in read_campaign(campaign.uri, "nadamw_external")} == {"nadamw"}
    assert {r.submission for r in read_logs(campaign.root / "nadamw_external")} == {"nadamw"}
    # two folders recording the same submission are not merged into one
    shutil.copytree(campaign.root / "nadamw_external", tmp_path / "two" / "nadamw_external")
    shutil.copytree(campaign.root / "nadamw_external", tmp_path / "two" / "nadamw_rerun")
    warnings.clear()
    names = {r.submission for r in read_logs(tmp_path / "two", warn=warnings.append)}
    assert names == {"nadamw_external", "nadamw_rerun"}
    assert len(warnings) == 2 and "keeps its folder name" in warnings[0]


def test_scores_from_mlflow_equal_scores_from_the_logs(campaign):
    client = MlflowClient(campaign.uri)
    before = sum(len(_score_runs(client, e, ViewType.ALL)) for e in campaign.experiments)
    files = _scored(_score(campaign, "--logs", str(campaign.root), "--json", *BOOT))
    mlflow = _scored(_from_mlflow(campaign, "--json", "--no-log-back", *BOOT))
    mixed = _scored(
        _score(
            campaign,
            "--logs",
            str(campaign.root / "adamw"),
            "--experiment",
            "nadamw_external",
            "--tracking-uri",
            campaign.uri,
            "--json",
            "--no-log-back",
            *BOOT,
        )
    )
    assert set(files) == {"adamw", "nadamw"}
    assert files["nadamw"]["times"] == {
        "wa": 165.0,
        "wb": 100.0,
    }  # medians of the fastest per study
    assert files["adamw"]["times"] == {"wa": 110.0, "wb": None}  # 260 and a miss: a miss
    for got in (mlflow, mixed):
        for name in files:
            for key in ("score", "interval", "times", "status", "score_trapezoid"):
                assert got[name][key] == files[name][key], (name, key)
    # --no-log-back wrote nothing
    assert sum(len(_score_runs(client, e, ViewType.ALL)) for e in campaign.experiments) == before


def test_same_submission_from_a_folder_and_mlflow_is_refused(campaign):
    result = _score(
        campaign,
        "--logs",
        str(campaign.root),
        "--experiment",
        "adamw",
        "--tracking-uri",
        campaign.uri,
    )
    assert result.exit_code == 2
    assert "'adamw' is in both" in result.stderr and "MLflow experiment 'adamw'" in result.stderr


def test_scores_logged_back_as_one_score_run_per_campaign(campaign):
    result = _from_mlflow(campaign, "--json", *BOOT)
    scores = _scored(result)  # stdout is still nothing but JSON
    assert "logged onto experiment 'adamw'" in result.stderr
    client = MlflowClient(campaign.uri)
    first = {}
    for experiment in campaign.experiments:
        (run,) = _score_runs(client, experiment)
        first[experiment] = run.info.run_id
        m, p = run.data.metrics, run.data.params
        assert run.info.status == "FINISHED" and run.data.tags["algoperf.ruleset"] == "external"
        for name, s in scores.items():  # the whole profile: both submissions on each campaign
            assert m[f"score/{name}"] == pytest.approx(s["score"])
            assert [m[f"score_lo/{name}"], m[f"score_hi/{name}"]] == pytest.approx(s["interval"])
            assert m[f"p_rank_1/{name}"] == pytest.approx(s["p_rank_1"])
            assert [m[f"rank_lo/{name}"], m[f"rank_hi/{name}"]] == s["rank_interval"]
            assert m[f"device_hours/{name}"] == pytest.approx(s["cost"]["device_h"])
            for w, t in s["times"].items():
                assert m.get(f"time_to_target/{name}/{w}") == (
                    None if t is None else pytest.approx(t)
                )
        # the area of the version (v0.6: the published trapezoid) unless --area says otherwise
        assert (
            p["area"],
            p["heldout_rule"],
            p["bootstrap"],
            p["bootstrap_seed"],
            p["confidence"],
        ) == ("trapezoid", "v0.6", "200", "3", "0.95")
        assert (
            "MLflow experiment 'adamw'" in p["sources"]
            and "MLflow experiment 'nadamw_external'" in p["sources"]
        )
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {
            "scores.csv",
            "times.csv",
            "scores.json",
            "performance_profile_external.png",
            "performance_profile_external.svg",
        } <= files
        local = Path(client.download_artifacts(run.info.run_id, "scores.json"))
        assert json.loads(local.read_text())["rulesets"][0]["submissions"][0]["name"] == "nadamw"
        assert "| nadamw |" in run.data.tags["mlflow.note.content"]
    # study runs carry their submission's score
    eid = client.get_experiment_by_name("nadamw_external").experiment_id
    studies = client.search_runs([eid], "tags.`algoperf.kind` = 'study'")
    assert len(studies) == 2
    assert all(
        s.data.tags["algoperf.score"].startswith(f"{scores['nadamw']['score']:.4f} [")
        for s in studies
    )
    # the score run is not a trial: reading the campaign back is unchanged
    records = read_campaign(campaign.uri, "adamw")
    assert len(records) == 8 and {r.submission for r in records} == {"adamw"}

    # Re-scoring with other options replaces the run (params cannot change in place).
    again = _from_mlflow(campaign, "--area", "trapezoid", "--bootstrap", "0")
    assert again.exit_code == 0, again.output
    assert "replacing 1 older" in again.stdout
    for experiment in campaign.experiments:
        (run,) = _score_runs(client, experiment)
        assert run.info.run_id != first[experiment]
        assert run.data.params["area"] == "trapezoid" and run.data.params["bootstrap"] == "0"
        assert "score_lo/nadamw" not in run.data.metrics
        assert client.get_run(first[experiment]).info.lifecycle_stage == "deleted"


def test_a_store_failing_while_logging_back_loses_no_result(campaign, monkeypatch):
    import algoperf.tracking

    def down(*args, **kwargs):
        raise ConnectionError("Connection refused\nmore lines of urllib3")

    monkeypatch.setattr(algoperf.tracking, "log_scores", down)
    result = _from_mlflow(campaign, "--json", "--bootstrap", "0")
    assert result.exit_code == 1
    assert set(json.loads(result.stdout)["rulesets"][0]["submissions"][0]) >= {"name", "score"}
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not logged back" in errors[0] and campaign.uri in errors[0]
    assert "ConnectionError: Connection refused" in errors[0] and "urllib3" not in result.stderr


def test_a_tracking_server_that_is_down_is_one_clear_line(campaign, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    uri = f"http://127.0.0.1:{free_port()}"
    result = _score(campaign, "--experiment", "adamw", "--tracking-uri", uri)
    assert result.exit_code == 2 and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert (
        len(errors) == 1
        and uri in errors[0]
        and "start it" in errors[0]
        and "--tracking-uri" in errors[0]
    )
    assert "Traceback" not in result.stderr


def test_bad_mlflow_inputs_are_one_clear_line(campaign, tmp_path):
    none = CliRunner().invoke(app, ["score"])
    assert (
        none.exit_code == 2 and "--logs DIR" in none.stderr and "--experiment NAME" in none.stderr
    )
    unknown = _score(campaign, "--experiment", "nope", "--tracking-uri", campaign.uri)
    assert unknown.exit_code == 2 and "no MLflow experiment named 'nope'" in unknown.stderr
    assert "adamw" in unknown.stderr  # says what the store holds
    missing = tmp_path / "elsewhere" / "mlflow.db"
    absent = _score(campaign, "--experiment", "adamw", "--tracking-uri", f"sqlite:///{missing}")
    assert absent.exit_code == 2 and str(missing) in absent.stderr and not missing.exists()
    other = _score(
        campaign, "--experiment", "adamw", "--tracking-uri", campaign.uri, "--ruleset", "self"
    )
    assert other.exit_code == 2 and "no self tuning trials" in other.stderr
    for result in (none, unknown, absent, other):
        assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_compare_from_mlflow_equals_compare_from_the_logs(campaign):
    """`algoperf compare mlflow:A mlflow:B` reads the campaigns as `score --experiment` does."""

    def pairs(*sources: str) -> dict:
        args = ["compare", *sources, "--targets", str(campaign.targets), "--tracking-uri",
                campaign.uri, "--replicates", "300", "--json"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        (pair,) = json.loads(result.stdout)["pairs"]
        return pair

    logs = pairs(str(campaign.root / "adamw"), str(campaign.root / "nadamw_external"))
    mlflow = pairs("mlflow:adamw", "mlflow:nadamw_external")
    assert (logs["a"], logs["b"]) == (mlflow["a"], mlflow["b"]) == ("adamw", "nadamw")
    assert mlflow["score_difference"] == pytest.approx(logs["score_difference"])
    assert mlflow["p_score"] == pytest.approx(logs["p_score"])
    # wa: adamw's study medians 100, 120 vs nadamw's 180, 150 -> paired medians 110 vs 165
    (wa,) = [w for w in mlflow["workloads"] if w["workload"] == "wa"]
    assert (wa["units"], wa["n_units"]) == ("studies", 2)
    assert wa["speedup"] == pytest.approx(165.0 / 110.0)
