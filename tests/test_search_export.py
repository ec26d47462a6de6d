"""Export: a found program becomes a submission folder that runs like any other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf.search import check, seeds
from algoperf.search.compile import to_optax
from algoperf.search.state import SearchState, load_state
from algoperf.submission.loading import load_submission

ALGOPERF = [sys.executable, "-m", "algoperf.cli"]


def _search_with(tmp_path: Path) -> Path:
    """A finished search's state: a seed and a child of it that scored better."""
    seed = seeds.seed_program("sgd_momentum")
    child = seeds.seed_program("lion")
    state = SearchState(settings={"workloads": ["mnist1d"], "seed_programs": ["sgd_momentum"]})
    for program, parent, origin, score in ((seed, None, "seed:sgd_momentum", 0.5), (child, check.canonical_hash(seed), "mutation:modify", 1.0)):
        h = check.canonical_hash(program)
        state.candidates[h] = {"hash": h, "program": program.to_json(), "parent": parent, "origin": origin, "generation": 0 if parent is None else 3,
                               "status": "seed" if parent is None else "evaluated", "times": {"mnist1d": 10.0 / score}, "fitness": {"score": score, "speedup": score * 2}}
    state.save(tmp_path / "searches" / "s1")
    return tmp_path / "searches"


def test_export_writes_a_submission_that_equals_the_program(tmp_path):
    searches = _search_with(tmp_path)
    out = tmp_path / "found"
    r = subprocess.run([*ALGOPERF, "search", "export", "s1", "--top", "2", "--out", str(out), "--search-dir", str(searches)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    best, second = out / "best", out / "top2"
    program = seeds.seed_program("lion")
    assert json.loads((best / "program.json").read_text()) == program.to_json()
    assert json.loads((second / "program.json").read_text()) == seeds.seed_program("sgd_momentum").to_json()
    readme = (best / "README.md").read_text()
    assert program.to_text().strip().splitlines()[1].strip() in readme  # the program
    assert "seed:sgd_momentum" in readme and "mutation:modify" in readme  # its lineage
    assert "| mnist1d | 10.0 |" in readme  # its fitness
    space = json.loads((best / "tuning_search_space.json").read_text())["learning_rate"]
    assert space["min"] < program.schedule.lr < space["max"] and space["scaling"] == "log"
    seed_hash = check.canonical_hash(seeds.seed_program("sgd_momentum"))
    r = subprocess.run([*ALGOPERF, "search", "export", "s1", "--candidate", seed_hash, "--out", str(out), "--search-dir", str(searches)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / seed_hash / "program.json").read_text()) == seeds.seed_program("sgd_momentum").to_json()
    source = (best / "submission.py").read_text()
    assert "def rule(g, p, step, lr, m):" in source and "jnp.sign(c)" in source

    submission = load_submission(best)
    opt = submission.module.make_optimizer(SimpleNamespace(learning_rate=program.schedule.lr), 1000)
    ref = to_optax(program, step_hint=1000)
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    s1, s2 = opt.init(params), ref.init(params)
    for t in range(3):
        g = jax.tree.map(lambda x, t=t: jax.random.normal(jax.random.PRNGKey(t), x.shape), params)
        (u1, s1), (u2, s2) = opt.update(g, s1, params), ref.update(g, s2, params)
        for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_exported_submission_runs_with_algoperf_run(tmp_path):
    searches = _search_with(tmp_path)
    out = tmp_path / "found"
    subprocess.run([*ALGOPERF, "search", "export", "s1", "--out", str(out), "--search-dir", str(searches)], check=True, timeout=300)
    r = subprocess.run(
        [*ALGOPERF, "run", "--submission", str(out / "best"), "--workload", "mnist1d", "--max-steps", "5", "--no-tracking",
         "--executor", "local", "--experiment-dir", str(tmp_path / "exp")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (result,) = list((tmp_path / "exp").rglob("trial_result.json"))
    data = json.loads(result.read_text())
    assert data["global_step"] == 5 and data["status"] != "failed"


def test_export_of_an_unknown_search_says_what_is_missing(tmp_path):
    r = subprocess.run([*ALGOPERF, "search", "export", "nope", "--search-dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no search 'nope'" in r.stderr
    assert load_state(tmp_path / "nope") is None


def test_bad_search_options_are_refused_before_anything_runs(tmp_path):
    for args, message in ((["--seed-program", "rmsprop"], "choose from adamw, nadamw, sgd_momentum, lion"),
                          (["--workloads", "mnist1d,nope"], "unknown nope"),
                          (["--mode", "annealing", "--generations", "0"], "choose evolution or cmaes")):
        r = subprocess.run([*ALGOPERF, "search", *args, "--search-dir", str(tmp_path), "--no-tracking", "--executor", "local"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and message in " ".join(r.stderr.split()), r.stderr
