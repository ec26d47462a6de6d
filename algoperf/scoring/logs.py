"""Read log trees into :class:`TrialLog` records, the only input of the scoring maths.

Which folders are trials is :mod:`algoperf.scoring.tree`'s business (layouts, and the
stray entries of published trees it skips). Here each trial's ``eval_measurements.csv``
becomes a record. A submission is named after its folder, except where its trials record
their submission (our trial folders: ``"submission"`` in ``meta_data_<p>.json`` or
``trial_result.json``): then the recorded name is used, as MLflow's
``algoperf.submission.loading`` tag does, so the experiment folder ``nadamw_external`` scores as
``nadamw`` from files and from MLflow alike.

A trial whose log cannot be used is a trial with no evals (it never reaches a target)
and one warning per kind of problem, with how many and the first few paths: no
``eval_measurements.csv`` (a run that died before its first eval), an empty file, a file
with malformed rows, one that cannot be read or one without an
``accumulated_submission_time`` column. A truncated last row (a run killed while
writing) is dropped and the rows before it are kept, as pandas' reader in AlgoPerf's
scorer keeps them. ``strict=True`` turns each of these into an error.

Another source only has to produce the same records, as MLflow's does
(:func:`algoperf.tracking.read_campaign`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from algoperf.runner.trial_log import EVAL_FILE, parse_eval_csv
from algoperf.scoring.errors import ScoringError
from algoperf.scoring.tree import ReadIssues, TrialFolder, discover_trials

MEASUREMENTS_FILE = EVAL_FILE
TIME_COLUMN = "accumulated_submission_time"
_META = re.compile(r"meta_data_(\d+)\.json")
# Trial folders of a submission folder probed for a recorded submission name: our trials
# all record it, so the first one answers; AlgoPerf trees cost a few directory listings.
_NAME_PROBES = 3

# Kinds of unusable trial logs (see the module docstring), as the warnings name them.
NO_CSV = f"no {MEASUREMENTS_FILE}"
EMPTY_CSV = f"an empty {MEASUREMENTS_FILE}"
TRUNCATED_CSV = "a truncated last row"
MALFORMED_CSV = f"malformed rows in {MEASUREMENTS_FILE}"
NO_TIME_COLUMN = f"no {TIME_COLUMN} column"
UNREADABLE_CSV = f"an unreadable {MEASUREMENTS_FILE}"
_ROWS_KEPT = "the row was dropped, the evals before it kept"


@dataclass(frozen=True, eq=False)
class TrialLog:
    """The evals of one trial: what scoring needs, whatever the source.

    ``times[i]`` is the accumulated_submission_time (seconds) of eval ``i`` and
    ``metrics["validation/<metric>"][i]`` its validation metric values (NaN where absent).
    ``workload`` has no framework suffix. ``ruleset`` is "external" or "self".
    """

    submission: str
    study: int
    workload: str
    trial: int
    times: np.ndarray
    metrics: Mapping[str, np.ndarray]
    framework: str = ""
    ruleset: str = "external"
    source: str = ""
    steps: np.ndarray | None = None


def discover(root: str | Path, issues: ReadIssues | None = None) -> list[TrialFolder]:
    """Every trial folder under ``root`` (see :func:`algoperf.scoring.tree.discover_trials`)."""
    return discover_trials(root, issues)


def _floats(values: list[str]) -> np.ndarray:
    try:
        return np.array(values, dtype=float)
    except ValueError:
        out = np.empty(len(values))
        for i, v in enumerate(values):
            try:
                out[i] = float(v)
            except ValueError:
                out[i] = np.nan
        return out


def _parse(text: str) -> tuple[dict[str, np.ndarray], str | None]:
    """(columns, the kind of problem or None) of an eval_measurements.csv text."""
    table = parse_eval_csv(text)
    if not table.rows and not table.truncated and not table.malformed:
        return {}, EMPTY_CSV  # no file, or a header without evals
    if table.malformed:
        return {}, MALFORMED_CSV
    problem = TRUNCATED_CSV if table.truncated else None
    header = table.header
    time_name = TIME_COLUMN if TIME_COLUMN in header else "score" if "score" in header else None
    if time_name is None:
        return {}, NO_TIME_COLUMN
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(header):
        if name == time_name or name == "global_step" or name.startswith("validation/"):
            column = _floats([r[i] for r in table.rows])
            column.setflags(write=False)  # shared through the cache
            out[TIME_COLUMN if name == time_name else name] = column
    return out, problem


def parse_measurements(text: str, source: str = "eval_measurements.csv") -> dict[str, np.ndarray]:
    """The numeric columns of an eval_measurements.csv text that scoring uses.

    Keeps accumulated_submission_time (falling back to AlgoPerf's equal ``score``
    column), global_step and every ``validation/*`` column. Empty cells are NaN; a
    truncated last row (a run killed while writing) is dropped. A file that cannot be
    used raises :class:`ScoringError` naming ``source`` and the problem.
    """
    cols, problem = _parse(text)
    if not cols:
        raise ScoringError(f"{source}: {problem}")
    return cols


def read_measurements(path: str | Path) -> dict[str, np.ndarray]:
    """:func:`parse_measurements` of one file."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoringError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_measurements(text, str(path))


# Parsed files of this process, keyed by path, valid while (mtime, size) are unchanged:
# scoring the same tree again (another ruleset option, a service) skips the parsing.
_CACHE: dict[str, tuple[tuple[int, int], dict[str, np.ndarray], str | None]] = {}
_CACHE_MAX_FILES = 20_000


def _fetch(path: Path) -> tuple[tuple[int, int] | None, object]:
    """In a worker thread: the cached (columns, problem) of ``path``, its text, or None."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None, None
    except OSError:
        return None, UNREADABLE_CSV
    key = (st.st_mtime_ns, st.st_size)
    hit = _CACHE.get(str(path))
    if hit is not None and hit[0] == key:
        return key, hit[1:]
    try:
        return key, path.read_text(errors="replace")
    except OSError:  # e.g. no permission, or a folder of that name
        return None, UNREADABLE_CSV


def _record(
    item: TrialFolder, ruleset: str, fetched: tuple[tuple[int, int] | None, object]
) -> tuple[TrialLog, str | None]:
    """The record of one trial and the kind of problem its log has (None: none)."""
    csv_path = item.path / MEASUREMENTS_FILE
    key, payload = fetched
    if payload is None or payload is UNREADABLE_CSV:
        cols: dict[str, np.ndarray] = {}
        problem: str | None = NO_CSV if payload is None else UNREADABLE_CSV
    elif isinstance(payload, str):
        cols, problem = _parse(payload)
        if len(_CACHE) >= _CACHE_MAX_FILES:
            _CACHE.clear()
        _CACHE[str(csv_path)] = (key, cols, problem)  # type: ignore[assignment]
    else:
        cols, problem = payload  # type: ignore[misc]
    metrics = {k: v for k, v in cols.items() if k.startswith("validation/")}
    record = TrialLog(
        submission=item.submission,
        study=item.study,
        workload=item.workload,
        trial=item.trial,
        times=cols.get(TIME_COLUMN, np.empty(0)),
        metrics=metrics,
        framework=item.framework,
        ruleset=ruleset,
        source=str(csv_path),
        steps=cols.get("global_step"),
    )
    return record, problem


def read_logs(
    root: str | Path,
    ruleset: str = "external",
    *,
    max_workers: int | None = None,
    warn: Callable[[str], None] | None = None,
    strict: bool = False,
) -> list[TrialLog]:
    """All trials of a log tree as records.

    Entries that are not study/workload/trial folders and unusable trial logs are
    skipped with one warning per kind (``strict``: a :class:`ScoringError` instead).
    A thread pool stats and reads the files (I/O, which releases the GIL) while this
    thread parses them in order as they arrive; files parsed before in this process
    and unchanged since (same mtime and size) are not parsed again.
    """
    issues = ReadIssues()
    items = discover_trials(root, issues)
    items = _recorded_names(items, warn)
    seen: dict[tuple[str, int, str, int], TrialFolder] = {}
    for it in items:
        key = (it.submission, it.study, it.workload, it.trial)
        if key in seen:
            raise ScoringError(
                f"{it.path} and {seen[key].path} are the same trial of {it.submission} "
                "(one workload logged under two frameworks)"
            )
        seen[key] = it
    paths = [it.path / MEASUREMENTS_FILE for it in items]
    workers = max_workers or min(16, (os.cpu_count() or 2) * 2)
    records = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for item, fetched in zip(items, pool.map(_fetch, paths), strict=True):
            record, problem = _record(item, ruleset, fetched)
            if problem is not None:
                where = item.path if problem == NO_CSV else item.path / MEASUREMENTS_FILE
                if problem == TRUNCATED_CSV:
                    issues.add(problem, where, _ROWS_KEPT)
                else:
                    issues.add(problem, where)
            records.append(record)
    issues.report(warn, strict)
    return records


def recorded_submission(trial_folder: str | Path) -> str | None:
    """The submission name a trial folder records, or None (AlgoPerf's logs record none).

    Ours write ``"submission"`` into ``meta_data_<p>.json`` (the lowest p is read first)
    and ``trial_result.json``; unreadable or absent files are skipped.
    """
    folder = Path(trial_folder)
    try:
        metas = sorted(
            (int(m[1]), folder / name)
            for name in os.listdir(folder)
            if (m := _META.fullmatch(name))
        )
    except OSError:
        return None
    for path in [p for _, p in metas] + [folder / "trial_result.json"]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        name = data.get("submission") if isinstance(data, dict) else None
        if isinstance(name, str) and name.strip():
            return name.strip()
    return None


def _recorded_names(
    items: list[TrialFolder], warn: Callable[[str], None] | None
) -> list[TrialFolder]:
    """``items`` with each submission folder renamed to the submission its trials record.

    Two folders recording the same submission (one submission run as two campaigns)
    keep their folder names, with a warning: merging them would mix their studies.
    """
    by_folder: dict[str, list[TrialFolder]] = {}
    for it in items:
        by_folder.setdefault(it.submission, []).append(it)
    final: dict[str, str] = {}
    for folder, trials in by_folder.items():
        recorded = None
        for it in trials[:_NAME_PROBES]:
            recorded = recorded_submission(it.path)
            if recorded is not None:
                break
        final[folder] = recorded or folder
    counts: dict[str, int] = {}
    for name in final.values():
        counts[name] = counts.get(name, 0) + 1
    for folder, name in final.items():
        if name != folder and counts[name] > 1:
            final[folder] = folder
            if warn is not None:
                warn(
                    f"folder {folder!r} records submission {name!r}, a name another folder "
                    f"also scores under: {folder!r} keeps its folder name (score one campaign "
                    "per run to use the recorded name)"
                )
    if all(name == folder for folder, name in final.items()):
        return items
    return [
        TrialFolder(final[it.submission], it.study, it.workload, it.framework, it.trial, it.path)
        for it in items
    ]


def infer_ruleset(root: str | Path) -> str | None:
    """'self' or 'external' when the folder's name (or its parent's) says so, else None."""
    for part in reversed(Path(root).resolve().parts[-2:]):
        low = part.lower().replace("-", "_")
        if "self_tuning" in low or low in ("self", "selftuning"):
            return "self"
        if "external_tuning" in low or low in ("external", "externaltuning"):
            return "external"
    return None


def submissions_of(records: Iterable[TrialLog]) -> list[str]:
    """Submission names in first-seen order."""
    return list(dict.fromkeys(r.submission for r in records))
