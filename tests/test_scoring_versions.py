"""Benchmark versions, the per-study trial choice and tolerant reading of real-looking trees.

The tree below holds every kind of stray entry published AlgoPerf trees have, and two
trials whose eval-index order and time order disagree; the scores under each trial
choice are worked out by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from algoperf.scoring import ScoringError, bootstrap, read_logs, score_records, targets_from_dict
from algoperf.scoring.profile import study_times
from algoperf.scoring.versions import VERSIONS, choose_version, default_targets, get_version
from tests.test_scoring import TOY, cli, write_trial

H = 3 / 99  # spacing of AlgoPerf's 100-point tau grid on [1, 4]


def tree_with_strays(root: Path) -> Path:
    """Submissions a and b, one study each, workloads wa (accuracy >= 0.9), wb (loss <= 0.5).

    a/wa: trial_1 reaches the target at eval index 1 but at 400 s (slow evals);
          trial_2 at eval index 2 but at 150 s. Least time: 150 s; earliest index: 400 s.
    b/wa: 200 s. a/wb and b/wb: 100 s.
    Plus one of each stray entry and one trial of each unusable-log kind, all of which
    leave these times as they are (the unusable trials count as misses).
    """
    study_a, study_b = root / "a" / "study_0", root / "b" / "study_0"
    write_trial(study_a / "wa_jax" / "trial_1", [200.0, 400.0, 600.0], [0.5, 0.95, 0.96], "accuracy")
    write_trial(study_a / "wa_jax" / "trial_2", [50.0, 100.0, 150.0], [0.5, 0.6, 0.91], "accuracy")
    write_trial(study_b / "wa_jax" / "trial_1", [100.0, 200.0, 300.0], [0.5, 0.92, 0.93], "accuracy")
    for study in (study_a, study_b):
        write_trial(study / "wb_jax" / "trial_1", [50.0, 100.0, 150.0], [0.9, 0.4, 0.3], "loss")
    # stray entries
    (study_a / "wa_jax.log").write_text("I0101 training started\n")  # a run's log beside its folder
    (study_b / "wc_pytorch").mkdir()
    (study_b / "wc_pytorch" / "wc.log").write_text("died before its first eval\n")  # only a .log
    write_trial(study_b / "trial_3", [10.0], [0.99], "accuracy")  # a trial folder under a study
    (root / "score").mkdir()
    (root / "score" / "scores.csv").write_text("ruleset,rank\n")  # an output folder
    (root / "README.md").write_text("logs\n")
    # unusable trial logs: each a miss
    (study_a / "wa_jax" / "trial_3").mkdir()  # no eval_measurements.csv
    (study_b / "wb_jax" / "trial_2").mkdir()
    (study_b / "wb_jax" / "trial_2" / "eval_measurements.csv").write_text("")  # empty
    (study_b / "wa_jax" / "trial_2").mkdir()
    (study_b / "wa_jax" / "trial_2" / "eval_measurements.csv").write_text(
        "global_step,validation/accuracy\n100,0.99\n"  # unknown columns: no time column
    )
    return root


def targets_file(tmp_path: Path, version: str = "0.6") -> Path:
    path = tmp_path / f"targets_{version}.json"
    path.write_text(json.dumps({**TOY, "benchmark_version": version}))
    return path


def run(tmp_path: Path, *extra: str) -> tuple[dict, str]:
    root = tmp_path / "logs"
    if not root.exists():
        tree_with_strays(root)
    result = CliRunner().invoke(
        cli(), ["score", "--logs", str(root), "--json", "--bootstrap", "0", *extra]
    )
    assert result.exit_code == 0, result.stderr
    (ruleset,) = json.loads(result.stdout)["rulesets"]
    return {s["name"]: s for s in ruleset["submissions"]} | {"_": ruleset}, result.stderr


# Hand-computed scores, N = 2 workloads, profile on [1, 4] normalised by 3.
# Least time: a/wa 150 (r = 1), b/wa 200 (r = 4/3); wb ties (r = 1).
# Earliest eval index: a/wa 400 (r = 2), b/wa 200 (r = 1).
# Exact area: a workload with ratio r adds 4 - r. AlgoPerf's trapezoid on the 100-point grid:
# 4/3 and 2 are grid points, so the step there adds 4 - r + H/2 (half the interval before it).
EXACT = {"time": {"a": 1.0, "b": (8 / 3 + 3) / 6}, "eval-index": {"a": (2 + 3) / 6, "b": 1.0}}
TRAPEZOID = {
    "time": {"a": 1.0, "b": (8 / 3 + H / 2 + 3) / 6},
    "eval-index": {"a": (2 + H / 2 + 3) / 6, "b": 1.0},
}


@pytest.mark.parametrize("choice", ["time", "eval-index"])
@pytest.mark.parametrize("area", ["exact", "trapezoid"])
def test_score_under_each_trial_choice_by_hand(tmp_path, choice, area):
    got, _ = run(
        tmp_path, "--targets", str(targets_file(tmp_path)), "--trial-choice", choice, "--area", area
    )
    want = (EXACT if area == "exact" else TRAPEZOID)[choice]
    assert got["a"]["score"] == pytest.approx(want["a"], abs=1e-12)
    assert got["b"]["score"] == pytest.approx(want["b"], abs=1e-12)
    assert got["a"]["times"]["wa"] == (150.0 if choice == "time" else 400.0)
    assert got["_"]["trial_choice"] == choice


@pytest.mark.parametrize(
    ("version_args", "choice", "why"),
    [
        (["--benchmark-version", "0.5"], "eval-index", "--benchmark-version"),
        (["--benchmark-version", "0.6"], "time", "--benchmark-version"),
        ([], "time", "the benchmark_version of"),  # the targets file says 0.6
    ],
)
def test_the_version_sets_the_trial_choice_and_the_area(tmp_path, version_args, choice, why):
    got, stderr = run(tmp_path, "--targets", str(targets_file(tmp_path)), *version_args)
    assert got["_"]["trial_choice"] == choice and got["_"]["area"] == "trapezoid"
    assert got["a"]["score"] == pytest.approx(TRAPEZOID[choice]["a"], abs=1e-12)
    version = version_args[1] if version_args else "0.6"
    assert got["_"]["benchmark_version"] == version
    assert f"benchmark v{version} rules, from {why}" in stderr


def test_targets_file_of_v05_selects_the_v05_rules(tmp_path):
    got, stderr = run(tmp_path, "--targets", str(targets_file(tmp_path, "0.5")))
    assert got["_"]["benchmark_version"] == "0.5" and got["_"]["trial_choice"] == "eval-index"
    assert got["_"]["heldout_rule"] == "v0.5"
    assert "benchmark_version of" in got["_"]["benchmark_version_reason"]
    # the targets' held-out variant has no logs: scored without the check, and said so
    assert "wa_variant has no logs" in stderr


def test_every_stray_kind_is_skipped_with_one_summarised_warning(tmp_path):
    _, stderr = run(tmp_path, "--targets", str(targets_file(tmp_path)))
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    (layout,) = [w for w in warnings if "not a study, workload or trial folder" in w]
    assert "skipped 5 entries" in layout
    for part in (
        "2 stray files (a/study_0/wa_jax.log, README.md)",
        "1 workload folder without trial_<n> folders (b/study_0/wc_pytorch)",
        "misplaced trial_<n> folder (b/study_0/trial_3)",
        "folder of no known kind (score)",
    ):
        assert part in layout, part
    # one warning per kind of unusable trial log, each with its path and "a miss"
    for kind, path in (
        ("with no eval_measurements.csv", "a/study_0/wa_jax/trial_3"),
        ("with an empty eval_measurements.csv", "b/study_0/wb_jax/trial_2/eval_measurements.csv"),
        ("with no accumulated_submission_time column", "b/study_0/wa_jax/trial_2"),
    ):
        (line,) = [w for w in warnings if kind in w]
        assert path in line and "counted as a miss" in line


def test_strict_makes_each_kind_an_error(tmp_path):
    root = tree_with_strays(tmp_path / "logs")
    args = ["score", "--logs", str(root), "--targets", str(targets_file(tmp_path)), "--strict"]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 2 and result.stdout == ""
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "--strict" in error and "b/study_0/trial_3" in error
    assert "Traceback" not in result.stderr
    # once the layout is clean, the unusable logs stop it in turn
    for stray in ("README.md", "a/study_0/wa_jax.log"):
        (root / stray).unlink()
    for folder in ("score", "b/study_0/wc_pytorch", "b/study_0/trial_3"):
        for f in (root / folder).iterdir():
            f.unlink()
        (root / folder).rmdir()
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 2
    assert "no eval_measurements.csv" in result.stderr and "a/study_0/wa_jax/trial_3" in result.stderr


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (None, "no eval_measurements.csv"),
        ("", "an empty eval_measurements.csv"),
        ("accumulated_submission_time,validation/accuracy\n", "an empty eval_measurements.csv"),
        ("step,validation/accuracy\n1,0.99\n", "no accumulated_submission_time column"),
        ("accumulated_submission_time,validation/accuracy\n1,0.99,7\n2,0.99\n", "malformed rows"),
        ("a folder", "an unreadable eval_measurements.csv"),  # a folder of that name
    ],
)
def test_an_unusable_log_is_a_miss(tmp_path, content, kind):
    write_trial(tmp_path / "a" / "study_0" / "wa_jax" / "trial_1", [100.0], [0.95], "accuracy")
    folder = tmp_path / "b" / "study_0" / "wa_jax" / "trial_1"
    folder.mkdir(parents=True)
    if content == "a folder":
        (folder / "eval_measurements.csv").mkdir()
    elif content is not None:
        (folder / "eval_measurements.csv").write_text(content)
    warnings: list[str] = []
    records = read_logs(tmp_path, warn=warnings.append)
    result = score_records(records, targets_from_dict(TOY, "toy"), warn=warnings.append)
    raw = dict(zip(result.submissions, result.raw_times[:, 0].tolist(), strict=True))
    assert raw == {"a": 100.0, "b": math.inf}
    assert [w for w in warnings if kind in w and "counted as a miss" in w]
    with pytest.raises(ScoringError, match="--strict"):
        read_logs(tmp_path, strict=True)


def test_truncated_last_row_keeps_the_evals_before_it(tmp_path):
    folder = tmp_path / "a" / "study_0" / "wa_jax" / "trial_1"
    write_trial(folder, [10.0, 20.0], [0.5, 0.95], "accuracy")
    path = folder / "eval_measurements.csv"
    path.write_text(path.read_text() + "30.0,0,30")
    warnings: list[str] = []
    (record,) = read_logs(tmp_path, warn=warnings.append)
    assert record.times.tolist() == [10.0, 20.0]
    (line,) = warnings
    assert "truncated last row" in line and "before it kept" in line
    with pytest.raises(ScoringError, match="truncated"):
        read_logs(tmp_path, strict=True)


def test_missing_metric_column_is_a_miss_or_with_strict_an_error(tmp_path):
    write_trial(tmp_path / "a" / "study_0" / "wa_jax" / "trial_1", [100.0], [0.95], "accuracy")
    write_trial(tmp_path / "b" / "study_0" / "wa_jax" / "trial_1", [100.0], [0.95], "error_rate")
    records = read_logs(tmp_path)
    warnings: list[str] = []
    result = score_records(records, targets_from_dict(TOY, "toy"), warn=warnings.append)
    assert result.raw_times[:, 0].tolist() == [100.0, math.inf]
    assert [w for w in warnings if "no validation/accuracy column" in w and "b/study_0" in w]
    options = VERSIONS["0.6"].options("external", strict=True)
    with pytest.raises(ScoringError, match="validation/accuracy"):
        score_records(records, targets_from_dict(TOY, "toy"), options)


def test_study_and_trial_counts_of_the_version_are_checked(tmp_path):
    for sub in ("a", "b"):
        for j in (1, 2):
            write_trial(tmp_path / sub / "study_0" / "wa_jax" / f"trial_{j}", [100.0], [0.95], "accuracy")
    records = read_logs(tmp_path)
    warnings: list[str] = []
    options = VERSIONS["0.6"].options("external", studies=3, trials=5)
    score_records(records, targets_from_dict(TOY, "toy"), options, warn=warnings.append)
    assert [w for w in warnings if "other than the 3 studies" in w and "a/wa: 1" in w]
    assert [w for w in warnings if "other than the 5 trials" in w and "a/wa/study_0: 2" in w]
    with pytest.raises(ScoringError, match="3 studies"):
        score_records(records, targets_from_dict(TOY, "toy"), options.__class__(
            **{**options.__dict__, "strict": True}
        ))


def test_study_times_by_eval_index_take_the_first_on_a_tie():
    times = np.array([[300.0, 100.0, np.inf, np.nan], [np.inf, np.inf, np.nan, np.nan]])
    index = np.array([[2.0, 2.0, np.inf, np.nan], [np.inf, np.inf, np.nan, np.nan]])
    assert study_times(times).tolist() == [100.0, math.inf]
    assert study_times(times, index).tolist() == [300.0, math.inf]  # tie at index 2: first
    absent = np.full((1, 3), np.nan)
    assert np.isnan(study_times(absent, absent)).all()


def test_bootstrap_resamples_the_chosen_trial(tmp_path):
    # three identical studies: every replicate equals the point score, under each choice
    for sub, trials in (("a", ([200.0, 400.0], [50.0, 150.0])), ("b", ([100.0, 200.0],))):
        for k in range(3):
            for j, times in enumerate(trials):
                write_trial(
                    tmp_path / sub / f"study_{k}" / "wa_jax" / f"trial_{j + 1}",
                    times,
                    [0.95, 0.96] if j == 0 else [0.5, 0.96],
                    "accuracy",
                )
    records = read_logs(tmp_path)
    # a/wa: trial_1 reaches at eval 0 (200 s), trial_2 at eval 1 (150 s); b/wa: 100 s
    for choice, a_time in (("time", 150.0), ("eval-index", 200.0)):
        options = VERSIONS["0.6"].options("external", trial_choice=choice, area="exact")
        result = score_records(records, targets_from_dict(TOY, "toy"), options)
        assert result.raw_times[0, 0] == a_time
        boot = bootstrap(result, n=50, seed=1, level="studies")
        assert np.allclose(boot.samples, result.score[None, :]), choice
        # redrawing trials may leave only one of a's two: a/wa is 150 s or 200 s
        boot = bootstrap(result, n=200, seed=1, level="trials")
        assert set(np.round(boot.samples[:, 0], 9)) == {round(2.5 / 3, 9), round(2 / 3, 9)}


def test_version_inference_order_and_reasons(tmp_path):
    v05, v06 = VERSIONS["0.5"], VERSIONS["0.6"]
    base = ["criteo1tb", "wmt"]
    assert choose_version("0.5", None, [], base) == (v05, "--benchmark-version")
    named = targets_from_dict({**TOY, "benchmark_version": "0.5"}, "t.json")
    assert choose_version(None, named, [], base)[0] is v05
    version, why = choose_version(None, None, [tmp_path / "logs"], base + ["wmt_glu_tanh"])
    assert version is v05 and "wmt_glu_tanh" in why
    version, why = choose_version(None, None, [tmp_path / "x" / "v06_external_tuning"], base)
    assert version is v06 and "v06_external_tuning" in why
    version, why = choose_version(None, None, [tmp_path / "algoperf_v05" / "self_tuning"], base)
    assert version is v05 and "algoperf_v05" in why
    version, why = choose_version(None, None, [tmp_path / "logs"], base + ["finewebedu_lm"])
    assert version is v06 and "finewebedu_lm" in why
    version, why = choose_version(None, None, [tmp_path / "logs"], base)
    assert version is v06 and "latest" in why
    with pytest.raises(ScoringError, match="different benchmark versions"):
        choose_version(None, None, [tmp_path / "v05_a", tmp_path / "v06_b"], base)
    with pytest.raises(ScoringError, match="0.5, 0.6"):
        get_version("0.7")


def test_shipped_targets_are_used_only_for_the_versions_workloads():
    v05 = VERSIONS["0.5"]
    t = default_targets(v05, ["criteo1tb", "criteo1tb_embed_init"])
    assert t is not None and t.benchmark_version == "0.5" and len(t.base_workloads) == 8
    assert t.held_out_workloads[0] == "criteo1tb_embed_init"
    assert default_targets(v05, ["criteo1tb", "mnist1d"]) is None  # ours: the registry's
    v06 = VERSIONS["0.6"].targets()
    assert "finewebedu_lm" in v06.base_workloads and v06.held_out_workloads == ()
    assert v06.get("fastmri").target == pytest.approx(0.723653)


def test_bad_trial_choice_is_one_line(tmp_path):
    root = tree_with_strays(tmp_path / "logs")
    result = CliRunner().invoke(
        cli(), ["score", "--logs", str(root), "--trial-choice", "fastest", "--bootstrap", "0"]
    )
    assert result.exit_code == 2 and "--trial-choice" in result.stderr
    assert "Traceback" not in result.stderr
