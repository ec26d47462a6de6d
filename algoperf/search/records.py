"""The search in MLflow: one experiment per search, a run per candidate, the search's own run.

Each candidate run (nested under the search run) has its program text as the param
``program`` and the artifact ``program.py``, its ``parent``, ``origin`` and ``hash``,
the tag ``algoperf.search.status`` (seed, rejected, duplicate, pruned, evaluated), the
metrics ``time_to_target.<workload>`` (reached targets only) and ``fitness.score`` /
``fitness.speedup``. The search run holds the counts, ``fitness_over_time.png`` and the
best program (``best_program.py``). Runs are found again by their hash tag, so a
resumed search adds no second run for a candidate. MLflow mirrors ``state.json``, which
stays the source of truth.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from algoperf.search.language import from_json
from algoperf.search.state import SearchState

HASH_TAG = "algoperf.search.candidate"
STATUS_TAG = "algoperf.search.status"
SEARCH_TAG = "algoperf.search.run"
PARAM_LIMIT = 6000  # MLflow's longest param value


class Recorder:
    def __init__(self, tracking_uri: str, experiment: str) -> None:
        from algoperf.tracking.store import client_for, get_or_create_experiment

        self.uri = tracking_uri
        self.client = client_for(tracking_uri)
        self.experiment_id = get_or_create_experiment(self.client, tracking_uri, experiment)
        self._logged: set[str] = set()
        self.search_run = self._find({SEARCH_TAG: "true"}) or self.client.create_run(
            self.experiment_id, tags={SEARCH_TAG: "true", "mlflow.runName": "search"}, run_name="search")

    def _find(self, tags: dict[str, str]) -> Any:
        from algoperf.tracking.store import find_runs

        runs = find_runs(self.client, self.experiment_id, tags)
        return runs[0] if runs else None

    def _artifact(self, run: Any, name: str, text: str) -> None:
        from algoperf.tracking.artifacts import log_files

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_text(text)
            log_files(self.client, self.uri, run, [(path, None)])

    def record(self, state: SearchState) -> None:
        """Log the candidates not logged yet (final statuses only) and refresh the search run."""
        for record in state.candidates.values():
            if record["hash"] in self._logged or record["status"] == "proposed":
                continue
            if self._find({HASH_TAG: record["hash"]}) is None:
                self._log_candidate(record)
            self._logged.add(record["hash"])
        self._log_search(state)

    def _log_candidate(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        from algoperf.tracking.store import now_ms

        tags = {HASH_TAG: record["hash"], STATUS_TAG: record["status"], "mlflow.parentRunId": self.search_run.info.run_id,
                "algoperf.search.origin": record["origin"], "algoperf.search.generation": str(record["generation"])}
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"{record['status']}-{record['hash']}")
        text = from_json(record["program"]).to_text() if record["program"] else ""
        params = [Param("program", text[:PARAM_LIMIT]), Param("parent", str(record["parent"])), Param("hash", record["hash"])]
        if record.get("reasons"):
            params.append(Param("rejected_because", "; ".join(map(str, record["reasons"]))[:PARAM_LIMIT]))
        metrics = [Metric(f"time_to_target.{w}", t, now_ms(), 0) for w, t in record["times"].items() if t is not None and math.isfinite(t)]
        for key, value in (record.get("fitness") or {}).items():
            metrics.append(Metric(f"fitness.{key}", value, now_ms(), 0))
        self.client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=[RunTag(k, v) for k, v in tags.items()])
        if text:
            self._artifact(run, "program.py", text)
        self.client.set_terminated(run.info.run_id, "FAILED" if record["status"] == "rejected" else "FINISHED")

    def _log_search(self, state: SearchState) -> None:
        run_id = self.search_run.info.run_id
        for status, n in state.counts.items():
            self.client.log_metric(run_id, f"count.{status}", n, step=state.generation)
        last = state.history[-1] if state.history else None
        if last and last.get("score") is not None:
            self.client.log_metric(run_id, "best.score", last["score"], step=state.generation)
            self.client.log_metric(run_id, "best.speedup", last["speedup"], step=state.generation)
            best = state.candidates[last["best"]]
            self._artifact(self.search_run, "best_program.py", from_json(best["program"]).to_text())
        self._plot(state)

    def _plot(self, state: SearchState) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [h for h in state.history if h.get("score") is not None]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.step([h["elapsed_s"] / 60 for h in rows], [h["score"] for h in rows], where="post", label="best score")
        ax.step([h["elapsed_s"] / 60 for h in rows], [h["speedup"] for h in rows], where="post", label="best speedup vs seed")
        ax.set_xlabel("search time (min)")
        ax.legend()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fitness_over_time.png"
            fig.savefig(path, dpi=80, bbox_inches="tight")
            plt.close(fig)
            from algoperf.tracking.artifacts import log_files

            log_files(self.client, self.uri, self.search_run, [(path, None)])
