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
import io
import json
import math
import os
from dataclasses import dataclass
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


class TrialWriter:
    """Writes (and reads back) one trial directory.

    (Scoring's record of a finished trial's evals is :class:`algoperf.scoring.logs.TrialLog`.)
    """

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


@dataclass(frozen=True)
class EvalTable:
    """The cells of an eval_measurements.csv as text, as AlgoPerf and we write it.

    ``rows`` holds the complete rows (as many cells as the header). A last row with fewer
    or more cells was cut off by a kill mid-write: it is dropped and ``truncated`` says so.
    Other rows of the wrong length (a damaged file) are dropped and counted in ``malformed``.
    """

    header: list[str]
    rows: list[list[str]]
    truncated: bool = False
    malformed: int = 0

    def column(self, name: str) -> list[str]:
        i = self.header.index(name)
        return [r[i] for r in self.rows]


def parse_eval_csv(text: str) -> EvalTable:
    """Parse the text of an eval_measurements.csv (blank lines skipped).

    Files without quotes (every file we and AlgoPerf write) are split on commas, about
    5x faster than the csv module on the thousands of files a leaderboard reads.
    """
    if '"' in text:
        lines = list(csv.reader(io.StringIO(text)))
    else:
        lines = [line.split(",") for line in text.splitlines() if line]
    lines = [r for r in lines if r]
    if not lines:
        return EvalTable([], [])
    header, body = lines[0], lines[1:]
    truncated = bool(body) and len(body[-1]) != len(header)
    if truncated:
        body = body[:-1]
    rows = [r for r in body if len(r) == len(header)]
    return EvalTable(header, rows, truncated, len(body) - len(rows))


def eval_file_of(path: str | Path) -> Path:
    """``path`` itself, or the eval_measurements.csv inside it when it is a trial folder."""
    path = Path(path)
    return path / EVAL_FILE if path.is_dir() else path


def read_eval_table(path: str | Path) -> EvalTable:
    """:func:`parse_eval_csv` of a file (or of the eval_measurements.csv of a trial folder)."""
    with eval_file_of(path).open(newline="") as f:
        return parse_eval_csv(f.read())


def _float_or_none(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def read_evals(path: str | Path) -> list[dict[str, float]]:
    """The eval rows of a trial folder (or CSV file) as {column: float}.

    Empty and text cells are left out of a row; a last row cut off by a kill is dropped.
    """
    table = read_eval_table(path)
    out = []
    for raw in table.rows:
        row = {}
        for name, cell in zip(table.header, raw, strict=True):
            value = _float_or_none(cell)
            if value is not None:
                row[name] = value
        out.append(row)
    return out


def write_eval_table(path: str | Path, header: list[str], rows: list[list[str]]) -> None:
    """Rewrite an eval_measurements.csv atomically (a temporary file, then a rename)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
