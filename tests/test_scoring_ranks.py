"""Rank probabilities from the bootstrap, and a user's logs ranked among a shipped leaderboard."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from algoperf.cli import app
from algoperf.leaderboards import get_leaderboard
from algoperf.scoring import bootstrap
from algoperf.scoring.bootstrap import rank_probabilities, replicate_ranks
from tests.test_scoring import make_tree, score_tree


def test_ranks_by_hand():
    samples = np.array([[0.9, 0.5, 0.1], [0.4, 0.5, 0.1], [0.5, 0.5, 0.6], [0.9, 0.2, 0.3]])
    assert replicate_ranks(samples).tolist() == [[1, 2, 3], [2, 1, 3], [2, 2, 1], [1, 3, 2]]
    p_first, interval = rank_probabilities(samples, confidence=0.5)
    assert p_first.tolist() == [0.5, 0.25, 0.25]
    # quartiles by the CDF: a ranks {1,1,2,2} -> [1, 2]; c ranks {1,2,3,3} -> [1, 3]
    assert interval[0].tolist() == [1, 2]
    assert interval[2].tolist() == [1, 3]


def test_a_certain_winner_and_a_tie(tmp_path):
    spec = {
        "fast": {"wa": [[10.0], [11.0], [12.0]]},
        "twin1": {"wa": [[100.0], [110.0], [120.0]]},
        "twin2": {"wa": [[100.0], [110.0], [120.0]]},
    }
    result, _ = score_tree(make_tree(tmp_path, spec), workloads=("wa",))
    boot = bootstrap(result, n=300, seed=0)
    p = dict(zip(result.submissions, boot.p_first, strict=True))
    assert p["fast"] == 1.0 and p["twin1"] == 0.0
    ranks = dict(zip(result.submissions, boot.rank_interval.tolist(), strict=True))
    assert ranks["fast"] == [1, 1]
    assert ranks["twin1"][0] == 2 and ranks["twin2"][0] == 2  # ties share the better rank


LEADERBOARD = get_leaderboard("small-suite-v05")


@pytest.mark.skipif(not LEADERBOARD.entries(), reason="the leaderboard ships no logs yet")
def test_a_copy_of_a_reference_entry_ranks_where_it_stands(tmp_path):
    entry = LEADERBOARD.entries()[0]
    mine = tmp_path / "mine"
    shutil.copytree(LEADERBOARD.logs / entry, mine / "copied_entry")
    for f in mine.rglob("*.json"):  # our trial folders record their submission's name
        doc = json.loads(f.read_text())
        if isinstance(doc, dict) and "submission" in doc:
            doc["submission"] = "copied_entry"
            f.write_text(json.dumps(doc))
    args = ["score", "--logs", str(mine), "--leaderboard", LEADERBOARD.name, "--json",
            "--bootstrap", "200"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    (doc,) = json.loads(res.stdout)["rulesets"]
    subs = {s["name"]: s for s in doc["submissions"]}
    ref, copy = subs[f"{LEADERBOARD.prefix}/{entry}"], subs["copied_entry"]
    assert copy["score"] == ref["score"]
    # intervals: each is its own bootstrap draw (trials resampled), both hold the score
    for s in (copy, ref):
        assert s["interval"][0] <= s["score"] <= s["interval"][1]
    assert abs(copy["rank"] - ref["rank"]) == 1  # equal score, adjacent rank (ties by name)
    higher = sum(s["score"] > ref["score"] for s in doc["submissions"])
    assert min(copy["rank"], ref["rank"]) == higher + 1
    assert copy["p_rank_1"] is not None and copy["rank_interval"][0] >= 1
    # the leaderboard's entries without the copy score as they do alone
    alone = CliRunner().invoke(app, ["score", "--leaderboard", LEADERBOARD.name, "--json", "--bootstrap", "0"])
    assert alone.exit_code == 0, alone.output
    alone_scores = {s["name"]: s["score"] for s in json.loads(alone.stdout)["rulesets"][0]["submissions"]}
    assert alone_scores[ref["name"]] == pytest.approx(ref["score"])
