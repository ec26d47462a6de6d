"""Shipped reference leaderboards and the small suite's validity report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from algoperf.leaderboards import LEADERBOARDS, get_leaderboard, reference_records
from algoperf.leaderboards.validity import (
    agreement,
    complete_workloads,
    render_markdown,
    validity_report,
    workload_agreement,
)
from algoperf.scoring.errors import ScoringError

# (metric column, value that misses, value that reaches) under the registry's small-suite targets
METRICS = {"mnist1d": ("validation/accuracy", 0.5, 0.95), "ctr": ("validation/loss", 0.6, 0.40)}


def write_trial(folder: Path, workload: str, hit_at: float | None) -> None:
    """An AlgoPerf-format trial: evals at 1, 2, 3, ... s; the target reached from ``hit_at`` on."""
    column, miss, hit = METRICS[workload]
    folder.mkdir(parents=True)
    rows = ["global_step,accumulated_submission_time,accumulated_eval_time,accumulated_logging_time,total_duration,"
            f"preemption_count,{column}"]
    for t in range(1, 21):
        value = hit if hit_at is not None and t >= hit_at else miss
        rows.append(f"{10 * t},{float(t)},0.1,0.0,{t + 0.5},0,{value}")
    (folder / "eval_measurements.csv").write_text("\n".join(rows) + "\n")


def make_board(tmp_path: Path, times: dict[str, dict[str, list[float | None]]], published: dict[str, float],
               name: str = "board"):
    import json

    folder = tmp_path / name
    for entry, per_workload in times.items():
        for workload, trials in per_workload.items():
            for i, t in enumerate(trials, start=1):
                write_trial(folder / "logs" / entry / f"{workload}_jax" / f"trial_{i}", workload, t)
    (folder / "published_scores.json").write_text(json.dumps({"scores": published}))
    return replace(LEADERBOARDS["small-suite-v05"], folder=folder)


def test_agreement_matches_hand_computed_tau_and_rho():
    # small ranks a>b>c>d; published a>b>d>c: 5 of 6 pairs agree -> tau (5-1)/6; rho 1-6*2/(4*15)
    small = {"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.0}
    published = {"a": 0.9, "b": 0.8, "c": 0.1, "d": 0.2, "unscored": 0.5}
    a = agreement(small, published)
    assert a.n == 4
    assert a.kendall_tau == pytest.approx(4 / 6)
    assert a.spearman_rho == pytest.approx(0.8)
    assert a.top1
    assert not agreement({"a": 0.0, "b": 2.0, "c": 1.0}, {"a": 0.9, "b": 0.8, "c": 0.1}).top1


def test_agreement_needs_three_shared_entries():
    with pytest.raises(ValueError, match="at least 3"):
        agreement({"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 0.0, "c": 2.0})


def test_small_suite_ordered_like_published_gives_tau_one(tmp_path):
    published = {"fast": 0.8, "mid": 0.6, "slow": 0.4, "never": 0.0}
    board = make_board(tmp_path, {
        "fast": {"mnist1d": [2, 3, 2], "ctr": [2, 2, 4]},
        "mid": {"mnist1d": [3, 4, 5], "ctr": [3, 5, 3]},
        "slow": {"mnist1d": [5, 6, 7], "ctr": [6, 6, 7]},
        "never": {"mnist1d": [None] * 3, "ctr": [None] * 3},
    }, published)
    report = validity_report(board, n_bootstrap=200)
    assert report.workloads == ["ctr", "mnist1d"]
    assert report.overall.kendall_tau == pytest.approx(1.0)
    assert report.overall.top1
    assert report.small_scores["never"] == 0.0
    assert report.small_scores["fast"] > report.small_scores["mid"] > report.small_scores["slow"]
    lo, hi = report.overall.tau_interval
    assert lo <= 1.0 <= hi + 1e-12
    assert set(report.per_workload) == {"ctr", "mnist1d"}
    text = render_markdown(report, {"kendall_tau": 0.745})
    assert "| Kendall tau | 1.000" in text and "0.745" in text


def test_reversed_small_suite_gives_negative_tau_and_workloads_scored_only_where_everyone_ran(tmp_path):
    published = {"a": 0.8, "b": 0.6, "c": 0.4}
    board = make_board(tmp_path, {
        "a": {"mnist1d": [7, 8], "ctr": [2]},
        "b": {"mnist1d": [4, 5]},
        "c": {"mnist1d": [2, 2]},
    }, published)
    records = reference_records(board)
    assert {r.submission for r in records} == {"v0.5/a", "v0.5/b", "v0.5/c"}
    workloads, missing = complete_workloads(records, board)
    assert workloads == ["mnist1d"] and missing == {"b": ["ctr"], "c": ["ctr"]}
    report = validity_report(board, n_bootstrap=50)
    assert report.overall.kendall_tau == pytest.approx(-1.0)
    assert not report.overall.top1
    assert "b: ctr" in render_markdown(report)


def test_workload_agreement_ranks_misses_last_and_leaves_out_constant_sides():
    inf = float("inf")
    small = {"a": {"s1": 10.0, "s2": inf}, "b": {"s1": 20.0, "s2": inf}, "c": {"s1": inf, "s2": inf}}
    full = {"a": {"f1": 5.0, "f2": 1.0, "f3": 7.0}, "b": {"f1": 7.0, "f2": 1.0, "f3": 5.0},
            "c": {"f1": inf, "f2": 1.0, "f3": inf}, "only_full": {"f1": 1.0, "f2": 1.0, "f3": 1.0}}
    wa = workload_agreement(small, full, "full logs")
    assert wa.entries == ["a", "b", "c"]  # only_full has no small-suite logs: left out
    assert wa.tau["s1", "f1"] == pytest.approx(1.0)  # a < b < miss on both
    assert wa.tau["s1", "f3"] == pytest.approx(1 / 3)  # a, b swapped; both before c's miss: 2 of 3 pairs agree
    assert wa.tau["s2", "f1"] is None and wa.tau["s1", "f2"] is None  # all tied on one side: no order
    with pytest.raises(ValueError, match="--alias NAME=ENTRY renames them"):
        workload_agreement(small, {"shampoo": {"f1": 1.0}}, "full logs")


def test_validity_compares_each_small_workload_with_each_full_one(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from algoperf.cli import app

    board = make_board(tmp_path, {
        "a": {"mnist1d": [2, 3], "ctr": [5, 6]},
        "b": {"mnist1d": [4, 5], "ctr": [2, 3]},
        "c": {"mnist1d": [6, 7], "ctr": [None, None]},
    }, {"a": 0.9, "b": 0.5, "c": 0.1}, name="small_suite_v05")
    monkeypatch.setitem(LEADERBOARDS, "small-suite-v05", board)
    full = tmp_path / "full"  # full-scale logs of a (as 'alpha') and b; mnist1d stands in for itself here
    for name, hit in (("alpha", 3), ("b", 6)):
        write_trial(full / name / "study_0" / "mnist1d_jax" / "trial_1", "mnist1d", hit)
    runner = CliRunner()
    result = runner.invoke(app, ["leaderboard", "validity", "--bootstrap", "20", "--full-logs", str(full),
                                 "--alias", "alpha=a"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "over the 2 entries with full-scale logs (a, b;" in text
    assert "| a | 3 s |" in text and "| b | 6 s |" in text
    assert "| ctr (criteo1tb) | -1.00 |" in text  # b beats a on ctr; a is faster at full scale
    assert "| mnist1d (mnist) | +1.00 |" in text
    without_alias = runner.invoke(app, ["leaderboard", "validity", "--bootstrap", "20", "--full-logs", str(full)])
    assert without_alias.exit_code == 2 and "--alias NAME=ENTRY" in " ".join(without_alias.output.split())
    bad = runner.invoke(app, ["leaderboard", "validity", "--full-logs", str(full), "--alias", "alpha"])
    assert bad.exit_code == 2 and "give NAME=ENTRY" in " ".join(bad.output.split())
    missing = runner.invoke(app, ["leaderboard", "validity", "--full-logs", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no such folder" in " ".join(missing.output.split())


def test_score_of_the_shipped_logs_reproduces_the_validity_reports_scores(tmp_path, monkeypatch):
    """`algoperf score --logs <shipped logs>` applies the board's rules, not the v0.5 its folder names."""
    import json
    import shutil

    from typer.testing import CliRunner

    from algoperf.cli import app

    published = {"a": 0.8, "b": 0.6, "c": 0.4}
    board = make_board(tmp_path, {"a": {"mnist1d": [2, 3]}, "b": {"mnist1d": [4, 5]}, "c": {"mnist1d": [6, None]}},
                       published, name="small_suite_v05")
    monkeypatch.setitem(LEADERBOARDS, "small-suite-v05", board)

    def score(logs: Path) -> dict:
        result = CliRunner().invoke(app, ["score", "--logs", str(logs), "--json", "--bootstrap", "0"])
        assert result.exit_code == 0, result.stderr
        (ruleset,) = json.loads(result.stdout)["rulesets"]
        return ruleset

    shipped = score(board.logs)
    assert shipped["benchmark_version"] == board.rules_version == "0.6"
    assert "leaderboard small-suite-v05" in shipped["benchmark_version_reason"]
    report = validity_report(board, n_bootstrap=10)
    assert {s["name"]: s["score"] for s in shipped["submissions"]} == pytest.approx(report.small_scores)
    # the same logs copied elsewhere are a user's tree: its folder name decides, as for any tree
    copy = shutil.copytree(board.logs, tmp_path / "mine" / "small_suite_v05" / "logs")
    assert score(copy)["benchmark_version"] == "0.5"


def test_unknown_leaderboard_names_the_shipped_ones():
    with pytest.raises(ScoringError, match="small-suite-v05"):
        get_leaderboard("nope")


def test_shipped_published_scores_are_the_v05_external_leaderboard():
    scores = get_leaderboard("small-suite-v05").published_scores()
    assert len(scores) == 11
    assert max(scores, key=scores.get) == "shampoo_submission"


def test_workload_measured_on_two_kinds_of_machine_is_flagged(tmp_path):
    import json

    published = {"a": 0.8, "b": 0.6, "c": 0.4}
    board = make_board(tmp_path, {e: {"mnist1d": [2, 3], "ctr": [2, 3]} for e in published}, published)
    for meta_dir in (board.logs).rglob("trial_*"):
        # every trial on machine X, except entry c's ctr trials on machine Y
        kind = "cpu:1 (Y)" if "/c/ctr_jax/" in str(meta_dir) else "cpu:1 (X)"
        (meta_dir / "meta_data_0.json").write_text(json.dumps({"scheduler": {"hardware_kind": kind}}))
    report = validity_report(board, n_bootstrap=20)
    assert report.hardware == {"ctr": ["cpu:1 (X)", "cpu:1 (Y)"], "mnist1d": ["cpu:1 (X)"]}
    text = render_markdown(report)
    assert "| ctr | cpu:1 (X); cpu:1 (Y) (MIXED" in text
    assert "| mnist1d | cpu:1 (X) |" in text


def test_publish_keeps_small_files_of_finished_trials_and_a_new_checkout_resumes_from_them(tmp_path):
    from algoperf.leaderboards.campaign import publish, seed_from_published

    out = tmp_path / "out"
    done = out / "baseline" / "ctr_jax" / "trial_1"
    running = out / "baseline" / "ctr_jax" / "trial_2"
    for trial in (done, running):
        write_trial(trial, "ctr", 3)
        (trial / "checkpoint").mkdir()
    (done / "trial_result.json").write_text("{}")
    shipped = tmp_path / "shipped"
    assert publish(out, shipped) == 1
    assert sorted(p.name for p in (shipped / "baseline" / "ctr_jax" / "trial_1").iterdir()) == [
        "eval_measurements.csv", "trial_result.json"]
    assert not (shipped / "baseline" / "ctr_jax" / "trial_2").exists()
    fresh = tmp_path / "fresh"
    assert seed_from_published(shipped, fresh) == 1
    assert (fresh / "baseline" / "ctr_jax" / "trial_1" / "trial_result.json").exists()
    assert seed_from_published(shipped, fresh) == 0  # already there: nothing copied twice


def test_resumed_campaign_starts_only_the_unfinished_pairs(tmp_path, monkeypatch):
    from algoperf.leaderboards import campaign

    out = tmp_path / "out"
    for i in range(1, 3):  # baseline's two ctr trials finished; its mnist1d trial 2 was killed
        (out / "baseline" / "ctr_jax" / f"trial_{i}").mkdir(parents=True)
        (out / "baseline" / "ctr_jax" / f"trial_{i}" / "trial_result.json").write_text("{}")
    (out / "baseline" / "mnist1d_jax" / "trial_1").mkdir(parents=True)
    (out / "baseline" / "mnist1d_jax" / "trial_1" / "trial_result.json").write_text("{}")
    (out / "baseline" / "mnist1d_jax" / "trial_2").mkdir()
    entries = tmp_path / "entries"
    (entries / "baseline").mkdir(parents=True)
    (entries / "baseline" / "submission.py").write_text("")
    started = []
    monkeypatch.setattr(campaign.subprocess, "call", lambda cmd, env: started.append(cmd) or 0)
    plan = campaign.CampaignPlan(out=out, published_entries=entries, entries=("baseline",),
                                 workloads=("mnist1d", "ctr"), trials=2)
    assert campaign.run_campaign(plan, say=lambda _: None) == 0
    assert [cmd[cmd.index("--workload") + 1] for cmd in started] == ["mnist1d"]


def test_cost_table_shows_first_eval_time_and_call_rate_relative_to_baseline(tmp_path):
    published = {"baseline": 0.8, "heavy": 0.6, "other": 0.4}
    board = make_board(tmp_path, {e: {"mnist1d": [3, 4]} for e in published}, published)
    # "heavy" makes 2 calls a second where the others make 10, and compiles 6 s before its first eval
    for trial in (board.logs / "heavy" / "mnist1d_jax").iterdir():
        csv = trial / "eval_measurements.csv"
        header, *rows = csv.read_text().splitlines()
        slow = []
        for row in rows:
            step, t, *rest = row.split(",")
            slow.append(",".join([str(int(step) // 5), str(float(t) + 5), *rest]))
        csv.write_text("\n".join([header, *slow]) + "\n")
    report = validity_report(board, n_bootstrap=10)
    cost = report.costs["mnist1d"]
    assert cost["baseline"].relative_rate == pytest.approx(1.0) and cost["baseline"].rate == pytest.approx(10.0)
    assert cost["heavy"].relative_rate == pytest.approx(0.2)
    assert cost["heavy"].first_eval_s == pytest.approx(6.0) and cost["other"].first_eval_s == pytest.approx(1.0)
    assert "| heavy | 6.0 s / 0.20x |" in render_markdown(report)
