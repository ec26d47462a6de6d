"""The search in MLflow (a real SQLite store): a run per candidate, once, and the search's own run."""

from __future__ import annotations

from algoperf.search import check, seeds
from algoperf.search.records import HASH_TAG, SEARCH_TAG, STATUS_TAG, Recorder
from algoperf.search.state import SearchState


def _state() -> SearchState:
    state = SearchState(settings={"workloads": ["mnist1d", "ctr"]}, generation=2)
    seed, child = seeds.seed_program("sgd_momentum"), seeds.seed_program("lion")
    h_seed, h_child = check.canonical_hash(seed), check.canonical_hash(child)
    state.candidates = {
        h_seed: {"hash": h_seed, "program": seed.to_json(), "parent": None, "origin": "seed:sgd_momentum", "generation": 0,
                 "status": "seed", "times": {"mnist1d": 9.0, "ctr": None}, "fitness": {"score": 0.4, "speedup": 1.0}},
        h_child: {"hash": h_child, "program": child.to_json(), "parent": h_seed, "origin": "mutation:insert", "generation": 1,
                  "status": "evaluated", "times": {"mnist1d": 6.0, "ctr": 12.0}, "fitness": {"score": 1.0, "speedup": 1.7}},
        "bad": {"hash": "bad", "program": None, "parent": h_seed, "origin": "llm", "generation": 2, "status": "rejected",
                "times": {}, "fitness": None, "reasons": ["answer is not a program"]},
    }
    state.counts = {"seed": 1, "proposed": 2, "rejected": 1, "evaluated": 1}
    state.history = [{"generation": 0, "elapsed_s": 10.0, "best": h_seed, "score": 0.4, "speedup": 1.0},
                     {"generation": 1, "elapsed_s": 70.0, "best": h_child, "score": 1.0, "speedup": 1.7}]
    return state


def test_candidates_are_logged_once_with_program_parent_status_and_fitness(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    state = _state()
    Recorder(uri, "my-search").record(state)
    recorder = Recorder(uri, "my-search")  # a resumed driver
    recorder.record(state)
    runs = recorder.client.search_runs([recorder.experiment_id])
    searches = [r for r in runs if r.data.tags.get(SEARCH_TAG) == "true"]
    candidates = {r.data.tags[HASH_TAG]: r for r in runs if HASH_TAG in r.data.tags}
    assert len(searches) == 1 and len(candidates) == 3 and len(runs) == 4
    child = next(c for c in state.candidates.values() if c["status"] == "evaluated")
    run = candidates[child["hash"]]
    assert run.data.params["program"] == seeds.seed_program("lion").to_text()
    assert run.data.params["parent"] == child["parent"]
    assert run.data.tags[STATUS_TAG] == "evaluated" and run.data.tags["mlflow.parentRunId"] == searches[0].info.run_id
    assert run.data.metrics["time_to_target.mnist1d"] == 6.0 and run.data.metrics["fitness.speedup"] == 1.7
    assert candidates["bad"].data.tags[STATUS_TAG] == "rejected" and "not a program" in candidates["bad"].data.params["rejected_because"]
    assert "time_to_target.ctr" not in candidates[child["parent"]].data.metrics  # a miss has no time
    artifacts = {a.path for a in recorder.client.list_artifacts(searches[0].info.run_id)}
    assert {"fitness_over_time.png", "best_program.py"} <= artifacts
    assert {a.path for a in recorder.client.list_artifacts(run.info.run_id)} == {"program.py"}
    assert searches[0].data.metrics["best.score"] == 1.0
