"""Read log trees into :class:`TrialLog` records, the only input of the scoring maths.

Layouts understood (``DIR`` is what ``--logs`` names):

* AlgoPerf's published logs, one ruleset folder:
  ``DIR/<submission>/study_<k>/<workload>_<jax|pytorch>/trial_<n>/eval_measurements.csv``;
* our experiment directories (one study each, read as study 0):
  ``DIR/<experiment>/<workload>_jax/trial_<n>/eval_measurements.csv``;
* either of those for a single submission: ``DIR`` itself holds the ``study_<k>`` or the
  ``<workload>_<framework>`` folders (the submission is then named after ``DIR``).

A submission is named after its folder, except where its trials record their submission
(our trial folders: ``"submission"`` in ``meta_data_<p>.json`` or ``trial_result.json``):
then the recorded name is used, as MLflow's ``algoperf.submission.loading`` tag does, so the
experiment folder ``nadamw_external`` scores as ``nadamw`` from files and from MLflow alike.

Files other than ``eval_measurements.csv`` and hidden folders are ignored; any other
folder where one of the above is expected is an error naming its path. A trial folder
without ``eval_measurements.csv`` (a run that died before its first eval) becomes a trial
with no evals, which never reaches a target, and a warning.

Another source only has to produce the same records, as MLflow's does
(:func:`algoperf.tracking.read_campaign`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from algoperf.scoring.errors import ScoringError

MEASUREMENTS_FILE = "eval_measurements.csv"
TIME_COLUMN = "accumulated_submission_time"
_STUDY = re.compile(r"study_(\d+)")
_TRIAL = re.compile(r"trial_(\d+)")
_WORKLOAD = re.compile(r"(.+)_(jax|pytorch)")
_META = re.compile(r"meta_data_(\d+)\.json")
# Trial folders of a submission folder probed for a recorded submission name: our trials
# all record it, so the first one answers; AlgoPerf trees cost a few directory listings.
_NAME_PROBES = 3


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


@dataclass(frozen=True)
class _TrialFile:
    submission: str
    study: int
    workload: str
    framework: str
    trial: int
    path: Path  # the trial folder


def _subdirs(path: Path) -> list[Path]:
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except NotADirectoryError:
        raise ScoringError(f"not a folder: {path}") from None
    except OSError as exc:
        raise ScoringError(f"cannot read {path}: {exc.strerror or exc}") from None
    return [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith((".", "__"))]


def _kind(path: Path) -> str:
    """'studies', 'workloads', 'trials', 'other' or 'empty', from the child folders."""
    names = [p.name for p in _subdirs(path)]
    if not names:
        return "empty"
    for kind, pattern in (("studies", _STUDY), ("workloads", _WORKLOAD), ("trials", _TRIAL)):
        if any(pattern.fullmatch(n) for n in names):
            odd = [n for n in names if not pattern.fullmatch(n)]
            if odd:
                allowed = {
                    "studies": "study_<k> folders",
                    "workloads": "<workload>_jax or <workload>_pytorch folders",
                    "trials": "trial_<n> folders",
                }[kind]
                raise ScoringError(
                    f"unexpected folder {path / odd[0]}: {path} holds {allowed}, "
                    f"so it may hold only {allowed}"
                )
            return kind
    return "other"


def _trials_of_workload(submission: str, study: int, path: Path) -> list[_TrialFile]:
    name, framework = _WORKLOAD.fullmatch(path.name).groups()  # type: ignore[union-attr]
    kind = _kind(path)
    if kind != "trials":
        raise ScoringError(
            f"unexpected layout at {path}: a workload folder must hold trial_<n> folders"
            + (" (it is empty)" if kind == "empty" else "")
        )
    return [
        _TrialFile(submission, study, name, framework, int(_TRIAL.fullmatch(t.name)[1]), t)
        for t in _subdirs(path)
    ]


def _trials_of_submission(submission: str, path: Path, kind: str) -> list[_TrialFile]:
    found: list[_TrialFile] = []
    if kind == "workloads":
        for w in _subdirs(path):
            found += _trials_of_workload(submission, 0, w)
        return found
    for s in _subdirs(path):
        study = int(_STUDY.fullmatch(s.name)[1])  # type: ignore[index]
        if _kind(s) != "workloads":
            raise ScoringError(
                f"unexpected layout at {s}: a study folder must hold "
                "<workload>_jax or <workload>_pytorch folders"
            )
        for w in _subdirs(s):
            found += _trials_of_workload(submission, study, w)
    return found


def _is_submission(path: Path) -> bool:
    try:
        return _kind(path) in ("studies", "workloads")
    except ScoringError:
        return False


def discover(root: str | Path) -> list[_TrialFile]:
    """Every trial folder under ``root``, with its submission, study and workload."""
    root = Path(root)
    if not root.exists():
        raise ScoringError(f"logs folder not found: {root}")
    if not root.is_dir():
        raise ScoringError(f"--logs wants a folder, got a file: {root}")
    kind = _kind(root)
    if kind == "workloads" and _STUDY.fullmatch(root.resolve().name):
        # one study of one submission: <submission>/study_<k>
        study = int(_STUDY.fullmatch(root.resolve().name)[1])  # type: ignore[index]
        name = root.resolve().parent.name
        return [t for w in _subdirs(root) for t in _trials_of_workload(name, study, w)]
    if kind in ("studies", "workloads"):
        return _trials_of_submission(root.resolve().name, root, kind)
    if kind == "trials":
        raise ScoringError(
            f"{root} is a workload folder (it holds trial_<n> folders): pass the folder that "
            "holds one folder per submission"
        )
    if kind == "empty":
        raise ScoringError(f"no submissions found in {root} (it holds no folders)")
    found: list[_TrialFile] = []
    for sub in _subdirs(root):
        sub_kind = _kind(sub)
        if sub_kind not in ("studies", "workloads"):
            hint = ""
            if sub_kind == "other" and all(_is_submission(g) for g in _subdirs(sub)):
                hint = (
                    f"; {root} seems to hold one folder per ruleset: pass each with its own --logs"
                )
            raise ScoringError(
                f"unexpected layout at {sub}: a submission folder must hold study_<k> "
                "folders or <workload>_jax|_pytorch folders (expected "
                "<submission>/study_<k>/<workload>_<framework>/trial_<n>/eval_measurements.csv)"
                + hint
            )
        found += _trials_of_submission(sub.name, sub, sub_kind)
    if not found:
        raise ScoringError(f"no trial folders found under {root}")
    return found


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


def parse_measurements(text: str, source: str = "eval_measurements.csv") -> dict[str, np.ndarray]:
    """The numeric columns of an eval_measurements.csv text that scoring uses.

    Keeps accumulated_submission_time (falling back to AlgoPerf's equal ``score``
    column), global_step and every ``validation/*`` column. Empty cells are NaN; a
    truncated last row (a run killed while writing) is dropped.
    """
    if '"' in text:
        rows = list(csv.reader(io.StringIO(text)))
    else:
        rows = [line.split(",") for line in text.splitlines() if line]
    if not rows:
        return {TIME_COLUMN: np.empty(0)}
    header, body = rows[0], rows[1:]
    if body and len(body[-1]) != len(header):
        body = body[:-1]
    bad = next((i for i, r in enumerate(body) if len(r) != len(header)), None)
    if bad is not None:
        raise ScoringError(
            f"{source}: row {bad + 2} has {len(body[bad])} fields, the header {len(header)}"
        )
    time_name = TIME_COLUMN if TIME_COLUMN in header else "score" if "score" in header else None
    if time_name is None:
        raise ScoringError(f"{source}: no {TIME_COLUMN} column")
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(header):
        if name == time_name or name == "global_step" or name.startswith("validation/"):
            column = _floats([r[i] for r in body])
            column.setflags(write=False)  # shared through the cache
            out[TIME_COLUMN if name == time_name else name] = column
    return out


def read_measurements(path: str | Path) -> dict[str, np.ndarray]:
    """:func:`parse_measurements` of one file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScoringError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_measurements(text, str(path))


# Parsed files of this process, keyed by path, valid while (mtime, size) are unchanged:
# scoring the same tree again (another ruleset option, a service) skips the parsing.
_CACHE: dict[str, tuple[tuple[int, int], dict[str, np.ndarray]]] = {}
_CACHE_MAX_FILES = 20_000


def _fetch(path: Path) -> tuple[tuple[int, int] | None, str | dict[str, np.ndarray] | None]:
    """In a worker thread: the cached columns of ``path`` or its text (None: no file)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        raise ScoringError(f"cannot read {path}: {exc.strerror or exc}") from None
    key = (st.st_mtime_ns, st.st_size)
    hit = _CACHE.get(str(path))
    if hit is not None and hit[0] == key:
        return key, hit[1]
    try:
        return key, path.read_text()
    except OSError as exc:
        raise ScoringError(f"cannot read {path}: {exc.strerror or exc}") from None


def _record(
    item: _TrialFile, ruleset: str, fetched: tuple[tuple[int, int] | None, object]
) -> tuple[TrialLog, str | None]:
    csv_path = item.path / MEASUREMENTS_FILE
    key, payload = fetched
    warning = None
    if payload is None:
        cols: dict[str, np.ndarray] = {TIME_COLUMN: np.empty(0)}
        warning = (
            f"no {MEASUREMENTS_FILE} in {item.path}: trial counted as never reaching the target"
        )
    elif isinstance(payload, str):
        cols = parse_measurements(payload, str(csv_path))
        if len(_CACHE) >= _CACHE_MAX_FILES:
            _CACHE.clear()
        _CACHE[str(csv_path)] = (key, cols)  # type: ignore[assignment]
    else:
        cols = payload  # type: ignore[assignment]
    metrics = {k: v for k, v in cols.items() if k.startswith("validation/")}
    record = TrialLog(
        submission=item.submission,
        study=item.study,
        workload=item.workload,
        trial=item.trial,
        times=cols[TIME_COLUMN],
        metrics=metrics,
        framework=item.framework,
        ruleset=ruleset,
        source=str(csv_path),
        steps=cols.get("global_step"),
    )
    return record, warning


def read_logs(
    root: str | Path,
    ruleset: str = "external",
    *,
    max_workers: int | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[TrialLog]:
    """All trials of a log tree as records.

    A thread pool stats and reads the files (I/O, which releases the GIL) while this
    thread parses them in order as they arrive; files parsed before in this process
    and unchanged since (same mtime and size) are not parsed again.
    """
    items = _recorded_names(discover(root), warn)
    seen: dict[tuple[str, int, str, int], _TrialFile] = {}
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
            record, warning = _record(item, ruleset, fetched)
            if warning and warn is not None:
                warn(warning)
            records.append(record)
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
    items: list[_TrialFile], warn: Callable[[str], None] | None
) -> list[_TrialFile]:
    """``items`` with each submission folder renamed to the submission its trials record.

    Two folders recording the same submission (one submission run as two campaigns)
    keep their folder names, with a warning: merging them would mix their studies.
    """
    by_folder: dict[str, list[_TrialFile]] = {}
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
        _TrialFile(final[it.submission], it.study, it.workload, it.framework, it.trial, it.path)
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
