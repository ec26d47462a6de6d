"""Paired comparisons: Holm on a worked example, known differences found, null p-values uniform."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from algoperf.cli import app
from algoperf.scoring.paired import compare_all, compare_pair, holm, paired_units, verdict
from tests.test_scoring import make_tree, score_tree, toy_targets


def test_holm_on_a_worked_example():
    # sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> max(0.06, 0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02])  # one test: unchanged


def _tree(tmp_path, a_times, b_times):
    """A and B on workload wa, one trial per study, studies as given."""
    spec = {
        "a": {"wa": [[float(t)] for t in a_times]},
        "b": {"wa": [[float(t)] for t in b_times]},
    }
    return make_tree(tmp_path, spec)


def _score(root):
    result, _ = score_tree(root, workloads=("wa",))
    return result


def test_a_known_difference_is_found(tmp_path):
    rng = np.random.default_rng(0)
    a = 100 + rng.normal(0, 3, 12)
    b = a * 1.5  # B takes 1.5x as long in every study
    result = _score(_tree(tmp_path, a.round(3), b.round(3)))
    r = compare_pair(result, "a", "b", n=2000, seed=1)
    assert [u.kind for u in r.units] == ["studies"]
    assert r.units[0].n == 12
    assert r.speedup[0] == pytest.approx(1.5, rel=1e-3)  # median ratio of paired medians
    assert r.speedup_interval[0][0] == pytest.approx(1.5, rel=1e-3)  # every pair is 1.5x
    # 2^12 swaps: only "no swap" and "swap all" reach |T| -> p close to 2/4096
    assert r.p_workload[0] < 0.01
    # b is 1.5x the best: score (4 - 1.5) / 3 of the exact area; a: 1
    assert r.score_diff == pytest.approx(1 - 2.5 / 3, abs=0.01)
    assert r.p_score < 0.01
    assert r.score_diff_interval[0] > 0
    assert verdict(r).startswith("a faster on 1 of 1 workloads (1 significant")


def test_no_difference_gives_uniform_p_values(tmp_path):
    """Under H0 (A and B drawn from one distribution) the p-value is uniform: about 5% below 0.05."""
    rng = np.random.default_rng(7)
    ps = []
    for rep in range(60):
        times = rng.lognormal(np.log(100), 0.3, size=(2, 8)).round(3)
        root = _tree(tmp_path / str(rep), times[0], times[1])
        ps.append(compare_pair(_score(root), "a", "b", n=300, seed=rep).p_workload[0])
    ps = np.array(ps)
    # uniform on [0, 1]: mean 1/2, quartiles 1/4 and 3/4 (loose bounds for 60 draws)
    assert 0.38 < ps.mean() < 0.62
    assert 0.1 < np.mean(ps < 0.25) < 0.42
    assert np.mean(ps < 0.05) < 0.15


def test_single_study_pairs_trials_as_seeds(tmp_path):
    spec = {"a": {"wa": [[100, 110, 120]]}, "b": {"wa": [[200, 220, 240]]}}
    result = _score(make_tree(tmp_path, spec))
    units = paired_units(result, 0, 1)
    assert units[0].kind == "trials" and units[0].n == 3
    r = compare_pair(result, "a", "b", n=500)
    assert r.speedup[0] == pytest.approx(2.0)  # fastest trial of each: 200 / 100


def test_a_miss_counts_as_budget_plus_one_second_in_ratios(tmp_path):
    spec = {"a": {"wa": [[100], [100]]}, "b": {"wa": [[float("inf")], [float("inf")]]}}
    result = _score(make_tree(tmp_path, spec))
    r = compare_pair(result, "a", "b", n=200)
    budget = toy_targets().workloads["wa"].max_runtime_sec  # 1000 s in TOY
    assert r.speedup[0] == pytest.approx((budget + 1) / 100)
    assert r.score_b == 0 and r.score_diff == pytest.approx(1.0)


def test_several_submissions_all_pairs_with_holm(tmp_path):
    spec = {s: {"wa": [[t], [t + 1], [t + 2]]} for s, t in (("a", 100), ("b", 150), ("c", 300))}
    result = _score(make_tree(tmp_path, spec))
    rs = compare_all(result, [("a", "b"), ("a", "c"), ("b", "c")], n=300)
    raw = [r.p_score for r in rs]
    assert [r.p_score_holm for r in rs] == pytest.approx(list(holm(raw)))


def test_compare_command(tmp_path):
    rng = np.random.default_rng(3)
    a = (100 + rng.normal(0, 2, 6)).round(2)
    a = [float(t) for t in a]
    ra = make_tree(tmp_path / "A", {"mine": {"wa": [[t] for t in a], "wb": [[t] for t in a]}})
    rb = make_tree(tmp_path / "B", {"mine": {"wa": [[2 * t] for t in a], "wb": [[t] for t in a]}})
    targets = tmp_path / "targets.json"
    from tests.test_scoring import TOY

    targets.write_text(json.dumps(TOY))
    args = ["compare", str(ra), str(rb), "--targets", str(targets), "--replicates", "500"]
    out = CliRunner().invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    (pair,) = json.loads(out.stdout)["pairs"]
    assert (pair["a"], pair["b"]) == ("A/mine", "B/mine")  # same name in both: tagged
    by_w = {w["workload"]: w for w in pair["workloads"]}
    assert by_w["wa"]["speedup"] == pytest.approx(2.0)
    assert by_w["wb"]["speedup"] == pytest.approx(1.0)
    assert pair["verdict"].startswith("A/mine faster on 1 of 2 workloads")
    text = CliRunner().invoke(app, args)
    assert text.exit_code == 0 and "A/mine faster on 1 of 2" in text.stdout


def test_compare_names_a_source_that_is_neither(tmp_path):
    out = CliRunner().invoke(app, ["compare", str(tmp_path / "nope")])
    assert out.exit_code == 2
    assert "is not a folder" in out.output and "mlflow:NAME" in out.output
    # a bare name is an MLflow experiment: a missing store is named
    out = CliRunner().invoke(app, ["compare", "nope", "--tracking-uri", f"sqlite:///{tmp_path}/x.db"])
    assert out.exit_code == 2
    assert "no MLflow store" in out.output
