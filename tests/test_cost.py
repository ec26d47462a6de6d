"""Compute cost: devices x wall time per trial, summed per workload, submission and campaign."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from algoperf.cli import app
from algoperf.scoring.cost import CostOptions, campaign_cost, parse_prices, trial_cost
from algoperf.scoring.errors import ScoringError
from algoperf.scoring.logs import read_logs
from tests.test_scoring import TOY, make_tree, score_tree

SPEC = {"a": {"wa": [[100.0, 120.0]], "wb": [[50.0]]}, "b": {"wa": [[200.0, 90.0]]}}
DEVICES = {"a": 4, "b": 2}


def _tree(root: Path, with_meta: bool = True) -> Path:
    make_tree(root, SPEC)
    if with_meta:
        for meta_dir in root.glob("*/study_*/*/trial_*"):
            sub = meta_dir.relative_to(root).parts[0]
            hw = {"device_count": DEVICES[sub], "device_kind": "TPU v9"}
            (meta_dir / "meta_data_0.json").write_text(json.dumps({"hardware": hw}))
    return root


def _wall(path: Path) -> tuple[float, float, float]:
    """(training, eval, total_duration) of the last row, read independently of the module."""
    rows = list(csv.DictReader(path.open()))
    last = rows[-1]
    return (float(last["accumulated_submission_time"]), float(last["accumulated_eval_time"]),
            float(last["total_duration"]))


def test_totals_are_the_sum_of_trial_wall_times_times_devices(tmp_path):
    root = _tree(tmp_path)
    records = read_logs(root)
    result, _ = score_tree(root)
    cost = campaign_cost(records, result.table, result, CostOptions(prices=parse_prices(["tpu v9=2"])))
    expected, by_sub = 0.0, {}
    for r in records:
        train, ev, wall = _wall(Path(r.source))
        d = DEVICES[r.submission]
        expected += d * wall
        by_sub[r.submission] = by_sub.get(r.submission, 0.0) + d * wall
        t = trial_cost(r, CostOptions())
        assert (t.train_s, t.eval_s) == (train, ev)
        assert t.wall_s == pytest.approx(wall)
    assert len(cost.trials) == 5
    assert cost.total_device_s == pytest.approx(expected)
    sums = cost.sums("submission")
    assert {k[0]: v["total"] for k, v in sums.items()} == pytest.approx(by_sub)
    for row in sums.values():  # the three parts add up to the whole
        assert row["train"] + row["eval"] + row["overhead"] == pytest.approx(row["total"])
    assert cost.total_usd == pytest.approx(2.0 * expected / 3600)
    # cost to target: devices x the scored time (median over studies of the fastest trial)
    assert cost.to_target["a", "wa"] == pytest.approx(4 * 100.0)
    assert cost.to_target["b", "wa"] == pytest.approx(2 * 90.0)


def test_devices_flag_where_meta_lacks_it(tmp_path):
    root = _tree(tmp_path, with_meta=False)
    records = read_logs(root)
    result, _ = score_tree(root)
    one = campaign_cost(records, result.table, result, CostOptions())
    eight = campaign_cost(records, result.table, result, CostOptions(devices=8))
    assert eight.total_device_s == pytest.approx(8 * one.total_device_s)
    assert "no device count" in one.notes[0]
    assert not eight.notes


@pytest.mark.parametrize("bad", ["cpu=", "cpu=-1", "=3", "cpu=abc"])
def test_bad_price_names_the_format(bad):
    with pytest.raises(ScoringError, match="DEVICE=USD_PER_HOUR"):
        parse_prices([bad])


def test_score_writes_cost_csv_and_json(tmp_path):
    root = _tree(tmp_path / "logs")
    targets = tmp_path / "t.json"
    targets.write_text(json.dumps(TOY))
    out = tmp_path / "out"
    args = ["score", "--logs", str(root), "--targets", str(targets), "--bootstrap", "50",
            "--price", "TPU v9=3", "--output", str(out), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)["rulesets"][0]
    records = read_logs(root)
    expected = sum(DEVICES[r.submission] * _wall(Path(r.source))[2] for r in records)
    assert doc["cost_total"]["device_s"] == pytest.approx(expected)
    assert doc["cost_total"]["usd"] == pytest.approx(3 * expected / 3600)
    rows = list(csv.DictReader((out / "cost.csv").open()))
    assert sum(float(r["device_s"]) for r in rows if r["level"] == "trial") == pytest.approx(expected)
    (total,) = [r for r in rows if r["level"] == "total"]
    assert float(total["device_s"]) == pytest.approx(expected)
