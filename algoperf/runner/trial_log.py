"""AlgoPerf-format trial directories: the source of truth for every result.

Layout (as AlgoPerf writes it, so AlgoPerf's scoring reads ours and ours reads theirs)::

    <experiment_dir>/<experiment_name>/[study_<k>/]<workload>_jax/trial_<n>/
        eval_measurements.csv      one row per eval, appended (a killed trial leaves a valid file)
        hparams.json               the hyperparameter point
        meta_data_<p>.json         hardware, versions, git commit, seed (p = preemption count)
        submission_metrics.jsonl   scalars the submission logged (step, name, value)
        trial_result.json          written last: the trial finished (resume skips it)
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

EVAL_FILE = "eval_measurements.csv"
HPARAMS_FILE = "hparams.json"
RESULT_FILE = "trial_result.json"
SUBMISSION_METRICS_FILE = "submission_metrics.jsonl"
TRACEBACK_FILE = "traceback.txt"  # a failed trial's full traceback


def trial_dir(experiment_dir: str | Path, experiment_name: str, workload: str, trial: int, study: int | None = None) -> Path:
    """Where a trial's files go."""
    base = Path(experiment_dir) / experiment_name
    if study is not None:
        base = base / f"study_{study}"
    return base / f"{workload}_jax" / f"trial_{trial}"


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_to_builtin) + "\n")
    os.replace(tmp, path)


def _to_builtin(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return str(value)


class TrialLog:
    """Writes (and reads back) one trial directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._columns: list[str] | None = None

    @property
    def eval_file(self) -> Path:
        return self.path / EVAL_FILE

    def write_hparams(self, hparams: dict[str, Any] | None) -> None:
        _write_json_atomic(self.path / HPARAMS_FILE, hparams or {})

    def write_meta(self, meta: dict[str, Any], preemption_count: int = 0) -> None:
        _write_json_atomic(self.path / f"meta_data_{preemption_count}.json", meta)

    def append_eval(self, row: dict[str, Any]) -> None:
        """Append one eval row; columns are fixed by the file's header (or this first row)."""
        if self._columns is None:
            if self.eval_file.exists() and self.eval_file.stat().st_size > 0:
                with self.eval_file.open(newline="") as f:
                    self._columns = next(csv.reader(f))
            else:
                self._columns = sorted(row)
                with self.eval_file.open("w", newline="") as f:
                    csv.writer(f).writerow(self._columns)
        with self.eval_file.open("a", newline="") as f:
            csv.writer(f).writerow([_csv_value(row.get(c, "")) for c in self._columns])
            f.flush()
            os.fsync(f.fileno())

    def append_submission_metrics(self, rows: list[tuple[int, str, float]]) -> None:
        if not rows:
            return
        with (self.path / SUBMISSION_METRICS_FILE).open("a") as f:
            for step, name, value in rows:
                f.write(json.dumps({"step": step, "name": name, "value": value}) + "\n")

    def write_traceback(self, text: str) -> None:
        (self.path / TRACEBACK_FILE).write_text(text)

    def write_result(self, result: dict[str, Any]) -> None:
        _write_json_atomic(self.path / RESULT_FILE, result)

    def read_result(self) -> dict[str, Any] | None:
        path = self.path / RESULT_FILE
        return json.loads(path.read_text()) if path.exists() else None


def _csv_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def read_evals(path: str | Path) -> list[dict[str, float]]:
    """Rows of an eval_measurements.csv as dicts of floats (empty cells dropped)."""
    path = Path(path)
    if path.is_dir():
        path = path / EVAL_FILE
    rows = []
    with path.open(newline="") as f:
        for raw in csv.DictReader(f):
            rows.append({k: float(v) for k, v in raw.items() if v not in ("", None)})
    return rows
