"""Scoring on hand-made log trees whose answers are worked out by hand."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from algoperf.scoring import (
    ScoringError,
    ScoringOptions,
    TrialLog,
    bootstrap,
    build_table,
    higher_is_better,
    read_logs,
    registry_targets,
    runtime_budget,
    score_records,
    targets_from_dict,
    time_to_target,
    workload_times,
)
from algoperf.scoring.command import score as score_command
from algoperf.scoring.logs import infer_ruleset
from algoperf.scoring.profile import exact_score, trapezoid_score
from algoperf.scoring.targets import EXTERNAL_BUDGETS_SEC, SELF_TUNING_FACTOR

INF = math.inf

# --- tiny log trees ------------------------------------------------------------------------

TOY = {
    "benchmark_version": "0.6",
    "base_workloads": ["wa", "wb"],
    "held_out_workloads": ["wa_variant"],
    "workloads": {
        "wa": {
            "target_metric_name": "accuracy",
            "validation_target_value": 0.9,
            "step_hint": 100,
            "max_allowed_runtime_sec": 1000,
        },
        "wa_variant": {"target_metric_name": "accuracy", "validation_target_value": 0.8},
        "wb": {
            "target_metric_name": "loss",
            "validation_target_value": 0.5,
            "max_allowed_runtime_sec": 2000,
        },
    },
}


def toy_targets(**changes):
    return targets_from_dict({**TOY, **changes}, "toy targets")


def write_trial(folder: Path, times: Sequence[float], values: Sequence[float | None], metric: str):
    """eval_measurements.csv with AlgoPerf's exact columns, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "accumulated_eval_time,accumulated_logging_time,accumulated_submission_time,"
        f"global_step,preemption_count,score,test/{metric},test/num_examples,total_duration,"
        f"train/{metric},validation/{metric},validation/num_examples"
    ]
    for i, (t, v) in enumerate(zip(times, values, strict=True)):
        val = "" if v is None else repr(float(v))
        lines.append(
            f"{3.5 * i},0,{t!r},{100 * (i + 1)},0,{t!r},{val},1000,{t + 9},{val},{val},500"
        )
    (folder / "eval_measurements.csv").write_text("\n".join(lines) + "\n")


def curve(t: float, workload: str) -> tuple[list[float], list[float], str]:
    """Evals at t/2, t, 2t whose validation metric first reaches the toy target at t.

    t = inf: three evals that never reach it.
    """
    spec = TOY["workloads"].get(workload, TOY["workloads"]["wa"])
    metric, target = spec["target_metric_name"], spec["validation_target_value"]
    higher = metric != "loss"
    bad, good = (target - 0.1, target + 0.05) if higher else (target + 0.1, target - 0.05)
    if math.isinf(t):
        return [10.0, 20.0, 30.0], [bad] * 3, metric
    return [t / 2, t, 2 * t], [bad, good, good], metric


def make_tree(root: Path, spec: dict, study_level: bool = True) -> Path:
    """spec[submission][workload] = [[trial times of study 0], [study 1], ...] (inf: miss)."""
    for sub, workloads in spec.items():
        for workload, studies in workloads.items():
            for k, trials in enumerate(studies):
                for j, t in enumerate(trials):
                    base = root / sub / f"study_{k}" if study_level else root / sub
                    times, values, metric = curve(t, workload)
                    write_trial(base / f"{workload}_jax" / f"trial_{j + 1}", times, values, metric)
    return root


def score_tree(root: Path, ruleset: str = "external", targets=None, **options):
    warnings: list[str] = []
    records = read_logs(root, ruleset, warn=warnings.append)
    baseline = options.pop("baseline", None)
    result = score_records(
        records,
        targets or toy_targets(),
        ScoringOptions(ruleset=ruleset, **options),
        baseline=baseline,
        warn=warnings.append,
    )
    return result, warnings


def by_name(result, values):
    return dict(zip(result.submissions, np.asarray(values).tolist(), strict=True))


# --- one trial -----------------------------------------------------------------------------


def test_time_to_target_is_the_first_eval_that_reaches_it():
    times = np.array([10.0, 20.0, 30.0, 40.0])
    acc = np.array([0.5, np.nan, 0.9, 0.95])
    assert time_to_target(times, acc, 0.9, higher_is_better=True) == 30.0  # >= reaches
    assert time_to_target(times, acc, 0.91, higher_is_better=True) == 40.0
    assert time_to_target(times, acc, 0.99, higher_is_better=True) == INF
    loss = np.array([0.9, 0.6, 0.5, 0.7])
    assert time_to_target(times, loss, 0.6, higher_is_better=False) == 20.0  # <= reaches
    assert time_to_target(times, loss, 0.6, higher_is_better=False, budget=19.0) == INF
    assert time_to_target(times, loss, 0.6, higher_is_better=False, budget=20.0) == 20.0


@pytest.mark.parametrize(
    ("metric", "higher"),
    [
        ("loss", False),
        ("validation/ce_loss", False),
        ("error_rate", False),
        ("wer", False),
        ("ppl", False),
        ("perplexity", False),
        ("accuracy", True),
        ("ssim", True),
        ("bleu", True),
        ("mean_average_precision", True),
    ],
)
def test_metric_direction_from_its_name(metric, higher):
    assert higher_is_better(metric) is higher


def test_unknown_metric_direction_says_how_to_fix():
    with pytest.raises(ScoringError, match="target_metric_goal"):
        higher_is_better("mystery_score")
    goal = {"target_metric_name": "mystery_score", "validation_target_value": 1.0}
    targets = targets_from_dict(
        {"workloads": {"w": {**goal, "target_metric_goal": "minimize"}}}, "inline"
    )
    assert targets.get("w").higher_is_better is False


# --- reductions, rules and areas -----------------------------------------------------------


def test_fastest_trial_per_study_then_median_over_studies(tmp_path):
    spec = {
        "s": {
            # studies' fastest trials: 50, 300, inf -> median 300
            "wa": [[INF, 50.0, 70.0], [300.0], [INF, INF]],
            # 4 studies: 100, 200, 300, inf -> (200 + 300) / 2
            "wb": [[100.0], [200.0], [300.0], [INF]],
        },
        "t": {
            "wa": [[100.0], [INF], [INF]],  # median of 100, inf, inf: inf
            "wb": [[100.0], [200.0], [INF], [INF]],  # (200 + inf) / 2: inf
        },
    }
    result, _ = score_tree(make_tree(tmp_path, spec))
    raw = by_name(result, result.raw_times)
    assert raw["s"] == [300.0, 250.0]
    assert raw["t"] == [INF, INF]
    assert result.status.tolist() == [["ok", "ok"], ["miss", "miss"]]
    # s is fastest everywhere it counts, t misses everything
    assert by_name(result, result.score_exact) == {"s": 1.0, "t": 0.0}


def test_exact_area_of_the_step_profile(tmp_path):
    # ratios: a = [1, 3] -> (3 + 1) / 6; b = [2, 1] -> (2 + 3) / 6
    spec = {"a": {"wa": [[100.0]], "wb": [[300.0]]}, "b": {"wa": [[200.0]], "wb": [[100.0]]}}
    result, _ = score_tree(make_tree(tmp_path, spec))
    assert by_name(result, result.ratios) == {"a": [1.0, 3.0], "b": [2.0, 1.0]}
    exact = by_name(result, result.score_exact)
    assert exact["a"] == pytest.approx(4 / 6, abs=1e-12)
    assert exact["b"] == pytest.approx(5 / 6, abs=1e-12)


def test_exact_area_equals_a_fine_numerical_integral():
    rng = np.random.default_rng(1)
    ratios = np.concatenate([1 + 4 * rng.random((5, 7)), np.full((5, 1), np.inf)], axis=1)
    taus = np.linspace(1, 4, 300_001)
    mids = (taus[1:] + taus[:-1]) / 2
    rho = (ratios[:, :, None] <= mids).mean(axis=1)
    numeric = rho.mean(axis=1)  # midpoint rule / 3 on a uniform grid of [1, 4]
    np.testing.assert_allclose(exact_score(ratios), numeric, atol=1e-5)


def test_trapezoid_area_is_algoperfs_discretisation():
    # a ratio just above 1 misses the first grid point: the trapezoid loses h/2 of the area
    h = 3 / 99
    ratios = np.array([[1.0 + 1e-9]])
    assert exact_score(ratios)[0] == pytest.approx(1.0, abs=1e-8)
    assert trapezoid_score(ratios)[0] == pytest.approx(1 - h / 2 / 3, abs=1e-12)
    # ratio exactly on a grid point: both agree up to the trapezoid's half step
    ratios = np.array([[1.0, 1 + 33 * h, np.inf]])
    exact = (3 + (3 - 33 * h) + 0) / 9
    assert exact_score(ratios)[0] == pytest.approx(exact, abs=1e-12)
    assert trapezoid_score(ratios)[0] == pytest.approx(exact + h / 2 / 9, abs=1e-12)
    # more grid points converge to the exact area
    r = np.array([[1.37, 2.9, 3.99]])
    assert abs(trapezoid_score(r, points=100_001)[0] - exact_score(r)[0]) < 1e-5
    assert abs(trapezoid_score(r)[0] - exact_score(r)[0]) > 1e-4


def test_four_times_the_best_counts_as_a_miss(tmp_path):
    spec = {
        "fast": {"wa": [[100.0]], "wb": [[100.0]]},
        "slow": {"wa": [[401.0]], "wb": [[400.0]]},
    }
    result, _ = score_tree(make_tree(tmp_path, spec))
    times = by_name(result, result.times)
    assert times["slow"] == [INF, 400.0]
    assert result.status[result.submissions.index("slow")].tolist() == ["over_4x", "ok"]
    assert by_name(result, result.raw_times)["slow"] == [401.0, 400.0]


def test_heldout_rule_v05(tmp_path):
    spec = {
        # reaches base fast, misses its variant
        "a": {"wa": [[100.0]], "wb": [[100.0]], "wa_variant": [[INF]]},
        # slower on base, variant fine
        "b": {"wa": [[200.0]], "wb": [[100.0]], "wa_variant": [[100.0]]},
        # variant reached but more than 4x slower than b's: base counts as a miss too
        "c": {"wa": [[150.0]], "wb": [[100.0]], "wa_variant": [[500.0]]},
    }
    root = make_tree(tmp_path, spec)
    plain, _ = score_tree(root)
    assert by_name(plain, plain.times) == {"a": [100, 100], "b": [200, 100], "c": [150, 100]}
    held, _ = score_tree(root, heldout_rule="v0.5")
    assert by_name(held, held.times) == {"a": [INF, 100], "b": [200, 100], "c": [INF, 100]}
    assert held.status[:, 0].tolist() == ["heldout", "ok", "heldout"]
    # b is now the best on wa: ratio 1 on both workloads
    assert by_name(held, held.score_exact) == {"a": 0.5, "b": 1.0, "c": 0.5}


def test_heldout_rule_needs_variants(tmp_path):
    root = make_tree(tmp_path, {"a": {"wa": [[100.0]], "wb": [[100.0]]}})
    with pytest.raises(ScoringError, match="held-out"):
        score_tree(root, heldout_rule="v0.5", targets=toy_targets(held_out_workloads=[]))


def test_speedup_replaces_misses_by_budget_plus_one_second(tmp_path):
    spec = {
        "base": {"wa": [[100.0]], "wb": [[200.0]]},
        "new": {"wa": [[50.0]], "wb": [[INF]]},
    }
    result, _ = score_tree(make_tree(tmp_path, spec), baseline="base")
    expected = math.sqrt((100 / 50) * (200 / 2001))  # wb's budget is 2000 s
    assert by_name(result, result.speedup) == pytest.approx({"base": 1.0, "new": expected})
    self_tuning, _ = score_tree(make_tree(tmp_path / "self", spec), ruleset="self", baseline="base")
    expected_self = math.sqrt((100 / 50) * (200 / (1.5 * 2000 + 1)))
    assert by_name(self_tuning, self_tuning.speedup)["new"] == pytest.approx(expected_self)


def test_budget_check_turns_late_hits_into_misses(tmp_path):
    spec = {"a": {"wa": [[1500.0]], "wb": [[100.0]]}, "b": {"wa": [[900.0]], "wb": [[100.0]]}}
    root = make_tree(tmp_path, spec)
    result, _ = score_tree(root)  # wa's budget: 1000 s
    assert by_name(result, result.raw_times)["a"] == [INF, 100.0]
    unchecked, _ = score_tree(root, budget_check=False)
    assert by_name(unchecked, unchecked.raw_times)["a"] == [1500.0, 100.0]
    self_tuning, _ = score_tree(root, ruleset="self")  # 1.5 x 1000 s
    assert by_name(self_tuning, self_tuning.raw_times)["a"] == [1500.0, 100.0]


def test_budget_constants():
    v05 = targets_from_dict(
        {"benchmark_version": "0.5", "base_workloads": ["imagenet_resnet"], "workloads": {}}, "x"
    )
    v06 = targets_from_dict({"benchmark_version": "0.6", "workloads": {}}, "x")
    assert runtime_budget("imagenet_resnet", v05, "external") == 63_008
    assert runtime_budget("imagenet_resnet", v05, "self") == 3 * 63_008
    assert runtime_budget("imagenet_resnet_large_bn_init", v05, "self") == 3 * 63_008
    assert runtime_budget("imagenet_resnet", v06, "self") == 1.5 * 66_159
    assert runtime_budget("ogbg", v06, "external") == 12_011
    assert runtime_budget("unknown_workload", v06, "external") is None
    assert SELF_TUNING_FACTOR == {"0.5": 3.0, "0.6": 1.5}
    assert set(EXTERNAL_BUDGETS_SEC["0.5"]) <= set(EXTERNAL_BUDGETS_SEC["0.6"])


# --- workload selection and targets ----------------------------------------------------------


def test_missing_base_workload_left_out_or_counted_as_miss(tmp_path):
    root = make_tree(tmp_path, {"a": {"wa": [[100.0]]}, "b": {"wa": [[200.0]]}})
    result, warnings = score_tree(root)
    assert result.workloads == ["wa"]
    assert any("left out" in w and "wb" in w for w in warnings)
    assert by_name(result, result.score_exact) == pytest.approx({"a": 1.0, "b": 2 / 3})
    as_miss, _ = score_tree(root, missing_as_miss=True)
    assert as_miss.workloads == ["wa", "wb"]
    assert by_name(as_miss, as_miss.score_exact) == pytest.approx({"a": 0.5, "b": 1 / 3})


def test_submission_without_logs_for_a_workload_misses_it(tmp_path):
    root = make_tree(tmp_path, {"a": {"wa": [[100.0]], "wb": [[100.0]]}, "b": {"wa": [[100.0]]}})
    result, warnings = score_tree(root)
    assert result.status[result.submissions.index("b")].tolist() == ["ok", "missing"]
    assert any(w.startswith("b: no logs for wb") for w in warnings)


def test_workload_without_target_names_it_and_the_option(tmp_path):
    root = make_tree(tmp_path, {"a": {"wa": [[100.0]], "wc": [[100.0]]}})
    with pytest.raises(ScoringError, match=r"'wc'.*--targets"):
        score_tree(root)
    with pytest.raises(ScoringError, match=r"'wc'.*--targets"):
        score_tree(root, workloads=("wa", "wc"))
    no_base = targets_from_dict({"workloads": TOY["workloads"]}, "no base list")
    with pytest.raises(ScoringError, match=r"'wc'.*--targets"):
        score_tree(root, targets=no_base)
    # leaving it out works
    result, _ = score_tree(root, workloads=("wa",))
    assert result.workloads == ["wa"]


def test_logged_non_base_workloads_are_not_scored(tmp_path):
    root = make_tree(tmp_path, {"a": {"wa": [[100.0]], "wb": [[100.0]], "wa_variant": [[1.0]]}})
    result, warnings = score_tree(root)
    assert result.workloads == ["wa", "wb"]
    assert any("wa_variant" in w and "--heldout-rule v0.5" in w for w in warnings)


def test_rulesets_are_never_mixed(tmp_path):
    records = read_logs(make_tree(tmp_path / "e", {"a": {"wa": [[1.0]]}}), "external")
    records += read_logs(make_tree(tmp_path / "s", {"b": {"wa": [[1.0]]}}), "self")
    with pytest.raises(ScoringError, match="separately"):
        build_table(records, toy_targets(), ScoringOptions(ruleset="external"))


def test_records_from_another_source_score_the_same(tmp_path):
    """A reader other than the file tree (MLflow later) only has to build TrialLogs."""

    def rec(sub, workload, t):
        times, values, metric = curve(t, workload)
        return TrialLog(
            sub, 0, workload, 1, np.array(times), {f"validation/{metric}": np.array(values)}
        )

    records = [rec("a", "wa", 100.0), rec("a", "wb", 300.0)]
    records += [rec("b", "wa", 200.0), rec("b", "wb", 100.0)]
    result = score_records(records, toy_targets())
    assert by_name(result, result.score_exact) == pytest.approx({"a": 4 / 6, "b": 5 / 6})


# --- layouts ---------------------------------------------------------------------------------


def test_experiment_directory_without_study_level_is_study_0(tmp_path):
    root = make_tree(tmp_path, {"exp1": {"wa": [[100.0, 50.0]]}}, study_level=False)
    records = read_logs(root)
    assert {(r.submission, r.study, r.workload, r.trial) for r in records} == {
        ("exp1", 0, "wa", 1),
        ("exp1", 0, "wa", 2),
    }
    # a single submission's folder works too, named after the folder
    assert {r.submission for r in read_logs(root / "exp1")} == {"exp1"}
    studies = make_tree(tmp_path / "tree", {"sub": {"wa": [[1.0], [2.0]]}})
    assert {(r.submission, r.study) for r in read_logs(studies / "sub")} == {
        ("sub", 0),
        ("sub", 1),
    }
    # one study folder of one submission keeps both names
    assert {(r.submission, r.study) for r in read_logs(studies / "sub" / "study_1")} == {("sub", 1)}


def test_ruleset_from_the_folder_name(tmp_path):
    assert infer_ruleset(tmp_path / "v05_self_tuning") == "self"
    assert infer_ruleset(tmp_path / "external_tuning" / "baseline") == "external"
    assert infer_ruleset(tmp_path / "logs") is None


def test_trial_without_measurements_is_a_miss_with_a_warning(tmp_path):
    root = make_tree(tmp_path, {"a": {"wa": [[100.0]]}, "b": {"wa": [[100.0]]}})
    (root / "b" / "study_1" / "wa_jax" / "trial_1").mkdir(parents=True)
    result, warnings = score_tree(root)
    assert any("no eval_measurements.csv" in w and "study_1" in w for w in warnings)
    # b's studies: 100 and a miss -> median inf
    assert by_name(result, result.raw_times)["b"] == [INF]


@pytest.mark.parametrize(
    ("make_bad", "offending"),
    [
        (lambda r: (r / "a" / "notes").mkdir(), "a/notes"),
        (lambda r: (r / "a" / "study_0" / "random").mkdir(), "study_0/random"),
        (lambda r: (r / "a" / "study_0" / "wa_jax" / "checkpoints").mkdir(), "wa_jax/checkpoints"),
        (lambda r: (r / "a" / "study_0" / "wb_pytorch").mkdir(), "wb_pytorch"),
        (lambda r: (r / "b" / "something").mkdir(parents=True), "b"),
    ],
)
def test_unexpected_layout_is_skipped_or_with_strict_an_error_naming_the_path(
    tmp_path, make_bad, offending
):
    root = make_tree(tmp_path / "logs", {"a": {"wa": [[100.0]]}})
    make_bad(root)
    warnings: list[str] = []
    (record,) = read_logs(root, warn=warnings.append)  # the one real trial, nothing else
    assert record.submission == "a" and record.trial == 1
    assert len(warnings) == 1 and offending in warnings[0]
    with pytest.raises(ScoringError) as err:
        read_logs(root, strict=True)
    assert offending in str(err.value) and "--strict" in str(err.value)
    assert "\n" not in str(err.value)


def test_workload_folder_or_missing_folder_is_a_clear_error(tmp_path):
    root = make_tree(tmp_path, {"a": {"wa": [[100.0]]}})
    with pytest.raises(ScoringError, match="workload folder"):
        read_logs(root / "a" / "study_0" / "wa_jax")
    with pytest.raises(ScoringError, match="not found"):
        read_logs(tmp_path / "nope")


def test_empty_cells_and_truncated_last_row(tmp_path):
    folder = tmp_path / "a" / "study_0" / "wa_jax" / "trial_1"
    write_trial(folder, [10.0, 20.0, 30.0], [None, 0.95, 0.97], "accuracy")
    csv_path = folder / "eval_measurements.csv"
    csv_path.write_text(csv_path.read_text() + "40.0,0,40.0")  # killed while writing
    (record,) = read_logs(tmp_path)
    assert record.times.tolist() == [10.0, 20.0, 30.0]
    assert np.isnan(record.metrics["validation/accuracy"][0])


# --- bootstrap -------------------------------------------------------------------------------


def _noisy_tree(root: Path) -> Path:
    rng = np.random.default_rng(7)
    spec = {}
    for name, speed in (("fast", 1.0), ("mid", 1.3), ("slow", 3.5)):
        spec[name] = {
            w: [[float(100 * speed * rng.uniform(0.8, 1.25))] for _ in range(5)]
            for w in ("wa", "wb")
        }
    spec["mid"]["wb"][2] = [INF]
    return make_tree(root, spec)


def test_bootstrap_interval_contains_the_score_and_is_reproducible(tmp_path):
    result, _ = score_tree(_noisy_tree(tmp_path))
    first = bootstrap(result, n=400, seed=3)
    again = bootstrap(result, n=400, seed=3)
    other = bootstrap(result, n=400, seed=4)
    np.testing.assert_array_equal(first.samples, again.samples)
    assert not np.array_equal(first.samples, other.samples)
    lo, hi = first.interval[:, 0], first.interval[:, 1]
    assert np.all(lo <= result.score) and np.all(result.score <= hi)
    assert np.all(hi[1:] - lo[1:] > 0)  # "fast" is always the fastest: no spread
    assert first.samples.shape == (400, 3)


def test_bootstrap_of_identical_studies_has_no_spread(tmp_path):
    spec = {
        "a": {"wa": [[100.0]] * 3, "wb": [[300.0]] * 3},
        "b": {"wa": [[200.0]] * 3, "wb": [[100.0]] * 3},
    }
    result, _ = score_tree(make_tree(tmp_path, spec))
    boot = bootstrap(result, n=50, seed=0)
    np.testing.assert_allclose(boot.interval, np.stack([result.score] * 2, axis=1))
    assert boot.flips[0, 1] == 0.0


def test_order_flips(tmp_path):
    result, _ = score_tree(_noisy_tree(tmp_path))
    boot = bootstrap(result, n=500, seed=0)
    names = result.submissions
    flips = boot.flips
    np.testing.assert_array_equal(flips, flips.T)
    assert flips[names.index("fast"), names.index("slow")] == 0.0
    # a flip share is the share of replicates ordering the pair against the point scores
    f, m = names.index("fast"), names.index("mid")
    hi, lo = (f, m) if result.score[f] >= result.score[m] else (m, f)
    expected = np.mean(boot.samples[:, hi] < boot.samples[:, lo]) + 0.5 * np.mean(
        boot.samples[:, hi] == boot.samples[:, lo]
    )
    assert flips[f, m] == pytest.approx(expected)


def test_trial_level_bootstrap_resamples_trials_within_studies(tmp_path):
    # one study of two trials: 100 (fast) and 400; resampling trials sometimes drops 100
    spec = {"a": {"wa": [[100.0, 400.0]]}, "b": {"wa": [[150.0]]}}
    result, _ = score_tree(make_tree(tmp_path, spec))
    studies = bootstrap(result, n=200, seed=0, level="studies")
    trials = bootstrap(result, n=200, seed=0, level="trials")
    a = result.submissions.index("a")
    assert np.all(studies.samples[:, a] == result.score[a])
    dropped = np.mean(trials.samples[:, a] < result.score[a])
    assert 0.1 < dropped < 0.4  # P(both draws are the slow trial) = 1/4


def test_vectorised_median_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.random((50, 7, 1))
    x[rng.random(x.shape) < 0.3] = np.inf
    counts = rng.integers(1, 8, size=50)
    padded = x.copy()
    for i, n in enumerate(counts):
        padded[i, n:] = np.nan
    got = workload_times(padded)
    for i, n in enumerate(counts):
        want = np.median(x[i, :n, 0])
        assert got[i] == want or (np.isinf(got[i]) and np.isinf(want))


# --- the command -------------------------------------------------------------------------------


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app."""

    app.command("score")(score_command)
    return app


def write_targets(tmp_path: Path) -> Path:
    path = tmp_path / "targets.json"
    path.write_text(json.dumps(TOY))
    return path


def test_cli_json_prints_only_json(tmp_path):
    root = make_tree(
        tmp_path / "logs",
        {
            "a": {"wa": [[100.0], [110.0]], "wb": [[300.0], [INF]]},
            "b": {"wa": [[200.0], [190.0]], "wb": [[100.0], [120.0]]},
        },
    )
    # --area exact keeps the exact area (the default is the version's trapezoid)
    args = ["score", "--logs", str(root), "--targets", str(write_targets(tmp_path)), "--area", "exact"]
    result = CliRunner().invoke(cli(), [*args, "--json", "--bootstrap", "200", "--seed", "1"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)  # nothing else on stdout
    (ruleset,) = data["rulesets"]
    subs = {s["name"]: s for s in ruleset["submissions"]}
    assert subs["a"]["times"] == {"wa": 105.0, "wb": None}  # median of 300 and a miss
    assert subs["b"]["times"] == {"wa": 195.0, "wb": 110.0}
    assert subs["b"]["score"] == pytest.approx(((4 - 195 / 105) + 3) / 6)  # the exact area
    assert ruleset["area"] == "exact" and ruleset["benchmark_version"] == "0.6"
    assert "benchmark v0.6 rules, from the benchmark_version of" in result.stderr
    lo, hi = subs["b"]["interval"]
    assert lo <= subs["b"]["score"] <= hi
    again = CliRunner().invoke(cli(), [*args, "--json", "--bootstrap", "200", "--seed", "1"])
    assert again.stdout == result.stdout


def test_cli_table_and_output_files(tmp_path):
    root = make_tree(
        tmp_path / "logs", {"a": {"wa": [[100.0]], "wb": [[300.0]]}, "b": {"wa": [[200.0]]}}
    )
    out = tmp_path / "out"
    args = ["score", "--logs", str(root), "--targets", str(write_targets(tmp_path))]
    result = CliRunner().invoke(
        cli(), [*args, "--output", str(out), "--baseline", "a", "--bootstrap", "50", "--area", "exact"]
    )
    assert result.exit_code == 0, result.stderr
    assert "b: no logs for wb" in result.stderr
    rows = {
        cells[2].strip(): cells
        for cells in (line.split("│") for line in result.stdout.splitlines() if "│" in line)
        if len(cells) > 3
    }
    # score printed as 'score [lo, hi]', times per workload, misses marked
    assert rows["a"][3].strip() == "1.0000 [1.0000, 1.0000]"
    assert rows["b"][3].strip() == "0.3333 [0.3333, 0.3333]"  # (4 - 2) / 3 / 2 workloads
    # then P(1st), the rank interval, device-hours and the speedup, then the workloads
    assert [c.strip() for c in rows["b"][4:6]] == ["0.00", "2"]
    assert [c.strip() for c in rows["b"][8:10]] == ["3.3 min", "no logs"]
    for name in ("scores.csv", "times.csv", "study_times.csv", "order_flips.csv", "scores.json"):
        assert (out / name).stat().st_size > 0
    assert (out / "performance_profile_external.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (out / "performance_profile_external.svg").read_bytes()[:500]
    scores = (out / "scores.csv").read_text().splitlines()
    assert scores[0].startswith("ruleset,rank,submission,score,lo,hi")
    assert scores[1].startswith("external,1,a,1.0,")


def test_cli_scores_rulesets_separately(tmp_path):
    ext = make_tree(tmp_path / "e", {"a": {"wa": [[100.0]], "wb": [[100.0]]}})
    slf = make_tree(tmp_path / "s", {"a": {"wa": [[300.0]], "wb": [[300.0]]}})
    result = CliRunner().invoke(
        cli(),
        [
            "score",
            "--logs",
            f"external:{ext}",
            "--logs",
            f"self:{slf}",
            "--targets",
            str(write_targets(tmp_path)),
            "--json",
            "--bootstrap",
            "0",
        ],
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["rulesets"]
    assert [r["ruleset"] for r in data] == ["external", "self"]
    # each alone in its own profile: both are the best there
    assert [r["submissions"][0]["score"] for r in data] == [1.0, 1.0]
    assert data[0]["submissions"][0]["interval"] is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--area", "simpson"], "--area"),
        (["--heldout-rule", "v0.4"], "--heldout-rule"),
        (["--baseline", "nobody"], "nobody"),
        (["--workloads", "wa,wz"], "'wz'"),
        (["--seed", "-1"], "--seed"),
        (["--confidence", "1.5"], "confidence"),
        (["--tau-points", "1"], "grid"),
        (["--ruleset", "both"], "--ruleset"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path, extra, message):
    root = make_tree(tmp_path / "logs", {"a": {"wa": [[100.0]], "wb": [[100.0]]}})
    result = CliRunner().invoke(
        cli(), ["score", "--logs", str(root), "--targets", str(write_targets(tmp_path)), *extra]
    )
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_cli_strict_layout_error_names_the_path(tmp_path):
    root = make_tree(tmp_path / "logs", {"a": {"wa": [[100.0]]}})
    (root / "a" / "study_0" / "stray").mkdir()
    args = ["score", "--logs", str(root), "--targets", str(write_targets(tmp_path))]
    result = CliRunner().invoke(cli(), [*args, "--strict"])
    assert result.exit_code == 2
    assert "a/study_0/stray" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    result = CliRunner().invoke(cli(), args)  # without --strict: skipped, one warning
    assert result.exit_code == 0, result.stderr
    assert [w for w in result.stderr.splitlines() if "a/study_0/stray" in w] != []


def test_targets_from_our_registry(tmp_path):
    targets = registry_targets()
    if targets is None or not targets.base_workloads:
        pytest.skip("the workload registry offers no targets yet")
    name = targets.base_workloads[0]
    spec = targets.get(name)
    budget = runtime_budget(name, targets, "external") or 1e9
    step = 0.01 * abs(spec.target) + 0.01
    reach, miss = (spec.target + step, spec.target - step)
    if not spec.higher_is_better:
        reach, miss = miss, reach
    root = tmp_path / "experiments"
    for exp, hit in (("fast", 0.2), ("slow", 0.6)):
        times = [hit * budget / 2, hit * budget, min(2 * hit * budget, budget)]
        write_trial(
            root / exp / f"{name}_jax" / "trial_1", times, [miss, reach, reach], spec.metric
        )
    result = CliRunner().invoke(cli(), ["score", "--logs", str(root), "--json", "--bootstrap", "0"])
    assert result.exit_code == 0, result.stderr
    (ruleset,) = json.loads(result.stdout)["rulesets"]
    assert ruleset["base_workloads"] == [name]
    subs = {s["name"]: s for s in ruleset["submissions"]}
    assert subs["fast"]["times"][name] == pytest.approx(0.2 * budget)
    assert subs["slow"]["score_exact"] == pytest.approx((4 - 3) / 3)
