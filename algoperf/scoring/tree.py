"""Find the trial folders of a log tree, skipping (and counting) whatever else it holds.

Layouts understood (``DIR`` is what ``--logs`` names):

* AlgoPerf's published logs, one ruleset folder:
  ``DIR/<submission>/study_<k>/<workload>_<jax|pytorch>/trial_<n>/eval_measurements.csv``;
* our experiment directories (one study each, read as study 0):
  ``DIR/<experiment>/<workload>_jax/trial_<n>/eval_measurements.csv``;
* either of those for a single submission: ``DIR`` itself holds the ``study_<k>`` or the
  ``<workload>_<framework>`` folders (the submission is then named after ``DIR``), or a
  single study (``DIR`` is a ``study_<k>`` folder, named after its parent).

Published trees hold more than that: per-run ``.log`` files beside the workload folders,
workload folders holding only a ``.log``, ``trial_<n>`` folders directly under a study.
Such entries are skipped and recorded in a :class:`ReadIssues` (one summarised warning
for all of them; ``--strict`` makes them an error). Hidden entries (``.failed``,
``.algoperf.lock``) and ``__pycache__`` are not part of a tree and are passed silently.
Files inside a trial folder (hyperparameters, metadata) are the trial's own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from algoperf.scoring.errors import ScoringError

STUDY = re.compile(r"study_(\d+)")
TRIAL = re.compile(r"trial_(\d+)")
WORKLOAD = re.compile(r"(.+)_(jax|pytorch)")

# Kinds of skipped entries, in the order the summary names them.
STRAY_FILE = "stray file"
EMPTY_WORKLOAD = "workload folder without trial_<n> folders"
MISPLACED_TRIAL = "misplaced trial_<n> folder"
OTHER_FOLDER = "folder of no known kind"
LAYOUT_KINDS = (STRAY_FILE, EMPTY_WORKLOAD, MISPLACED_TRIAL, OTHER_FOLDER)
_PLURALS = {
    STRAY_FILE: "stray files",
    EMPTY_WORKLOAD: "workload folders without trial_<n> folders",
    MISPLACED_TRIAL: "misplaced trial_<n> folders",
    OTHER_FOLDER: "folders of no known kind",
}
_EXAMPLES = 3


@dataclass(frozen=True)
class TrialFolder:
    """Where one trial's logs are, and whose trial it is."""

    submission: str
    study: int
    workload: str
    framework: str
    trial: int
    path: Path


@dataclass
class ReadIssues:
    """Entries skipped and trial logs that could not be used, by kind, for one warning each.

    ``layout`` kinds (:data:`LAYOUT_KINDS`) are summarised together; every other kind (a
    trial folder without ``eval_measurements.csv``, an empty CSV, ...) gets its own
    warning. Each names how many there were and the first few paths.
    """

    root: Path | None = None
    by_kind: dict[str, list[Path | str]] = field(default_factory=dict)
    # kind -> (what happened to them, what they are: "trial", "workload", ...)
    meta: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add(
        self, kind: str, path: Path | str, note: str = "counted as a miss", noun: str = "trial"
    ) -> None:
        self.by_kind.setdefault(kind, []).append(path)
        self.meta.setdefault(kind, (note, noun))

    def _show(self, path: Path | str) -> str:
        if self.root is not None and isinstance(path, Path):
            try:
                return str(path.relative_to(self.root))
            except ValueError:
                pass
        return str(path)

    def _examples(self, paths: list[Path | str]) -> str:
        shown = ", ".join(self._show(p) for p in paths[:_EXAMPLES])
        return shown + (", ..." if len(paths) > _EXAMPLES else "")

    def messages(self) -> list[str]:
        """One line for all layout kinds, then one per other kind."""
        out = []
        layout = [(k, self.by_kind[k]) for k in LAYOUT_KINDS if k in self.by_kind]
        if layout:
            total = sum(len(p) for _, p in layout)
            parts = [
                f"{len(p)} {_PLURALS[k] if len(p) > 1 else k} ({self._examples(p)})"
                for k, p in layout
            ]
            where = f" in {self.root}" if self.root is not None else ""
            out.append(
                f"skipped {total} entr{'ies' if total > 1 else 'y'}{where} that "
                f"{'are' if total > 1 else 'is'} not a study, workload or trial folder: "
                + "; ".join(parts)
            )
        for kind, paths in self.by_kind.items():
            if kind in LAYOUT_KINDS:
                continue
            note, noun = self.meta[kind]
            out.append(
                f"{len(paths)} {_plural(noun, len(paths))} with {kind}: {note} "
                f"({self._examples(paths)})"
            )
        return out

    def report(self, warn: Callable[[str], None] | None, strict: bool) -> None:
        """Warn once per kind, or with ``strict`` raise a :class:`ScoringError` naming them all."""
        lines = self.messages()
        if not lines:
            return
        if strict:
            raise ScoringError(
                "--strict: " + " | ".join(lines) + " (without --strict: one warning each and "
                "the scoring goes on; fix or remove them to score strictly)"
            )
        if warn is not None:
            for line in lines:
                warn(line)


def _plural(noun: str, n: int) -> str:
    if n == 1:
        return noun
    return noun[:-1] + "ies" if noun.endswith("y") else noun + "s"


def _entries(path: Path) -> tuple[list[os.DirEntry], list[os.DirEntry]]:
    """(sub-folders, files) of ``path``, sorted by name, hidden ones left out."""
    try:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
    except NotADirectoryError:
        raise ScoringError(f"not a folder: {path}") from None
    except OSError as exc:
        raise ScoringError(f"cannot read {path}: {exc.strerror or exc}") from None
    folders, files = [], []
    for e in entries:
        if e.name.startswith(".") or e.name == "__pycache__":
            continue
        (folders if e.is_dir() else files).append(e)
    return folders, files


def _workload(
    submission: str, study: int, path: Path, issues: ReadIssues
) -> list[TrialFolder]:
    name, framework = WORKLOAD.fullmatch(path.name).groups()  # type: ignore[union-attr]
    folders, files = _entries(path)
    found, others = [], []
    for f in folders:
        m = TRIAL.fullmatch(f.name)
        if m is None:
            others.append(Path(f.path))
        else:
            found.append(TrialFolder(submission, study, name, framework, int(m[1]), Path(f.path)))
    if not found:  # e.g. only the run's .log: the folder is the one entry skipped
        issues.add(EMPTY_WORKLOAD, path)
        return found
    for other in others:
        issues.add(OTHER_FOLDER, other)
    _stray_files(files, issues)
    return found


def _study(submission: str, study: int, path: Path, issues: ReadIssues) -> list[TrialFolder]:
    """Trials of the workload folders in ``path`` (a study, or a submission without studies)."""
    folders, files = _entries(path)
    found: list[TrialFolder] = []
    for f in folders:
        if WORKLOAD.fullmatch(f.name):
            found += _workload(submission, study, Path(f.path), issues)
        else:
            _stray_folder(f, issues)
    _stray_files(files, issues)
    return found


def _stray_folder(folder: os.DirEntry, issues: ReadIssues) -> None:
    """A folder where a study or workload folder was expected: a misplaced trial, or other."""
    issues.add(MISPLACED_TRIAL if TRIAL.fullmatch(folder.name) else OTHER_FOLDER, Path(folder.path))


def _stray_files(files: list[os.DirEntry], issues: ReadIssues) -> None:
    for f in files:
        issues.add(STRAY_FILE, Path(f.path))


def _kind(folders: list[os.DirEntry]) -> str:
    """'studies', 'workloads', 'trials' or 'other': what a folder's sub-folders say it is."""
    for kind, pattern in (("studies", STUDY), ("workloads", WORKLOAD), ("trials", TRIAL)):
        if any(pattern.fullmatch(f.name) for f in folders):
            return kind
    return "other"


def _submission(name: str, path: Path, issues: ReadIssues) -> list[TrialFolder]:
    folders, files = _entries(path)
    if _kind(folders) != "studies":
        return _study(name, 0, path, issues)
    found: list[TrialFolder] = []
    for f in folders:
        m = STUDY.fullmatch(f.name)
        if m is not None:
            found += _study(name, int(m[1]), Path(f.path), issues)
        else:
            _stray_folder(f, issues)
    _stray_files(files, issues)
    return found


def discover_trials(root: str | Path, issues: ReadIssues | None = None) -> list[TrialFolder]:
    """Every trial folder under ``root``; what else it holds goes into ``issues``."""
    root = Path(root)
    issues = issues if issues is not None else ReadIssues()
    issues.root = root
    if not root.exists():
        raise ScoringError(f"logs folder not found: {root}")
    if not root.is_dir():
        raise ScoringError(f"--logs wants a folder, got a file: {root}")
    folders, files = _entries(root)
    kind = _kind(folders)
    here = root.resolve()
    if kind == "workloads" and STUDY.fullmatch(here.name):
        # one study of one submission: <submission>/study_<k>
        return _study(here.parent.name, int(STUDY.fullmatch(here.name)[1]), root, issues)  # type: ignore[index]
    if kind in ("studies", "workloads"):
        return _submission(here.name, root, issues)
    if kind == "trials":
        raise ScoringError(
            f"{root} is a workload folder (it holds trial_<n> folders): pass the folder that "
            "holds one folder per submission"
        )
    found: list[TrialFolder] = []
    nested: list[Path] = []  # folders that hold submissions themselves (one per ruleset?)
    for f in folders:
        sub_folders, _ = _entries(Path(f.path))
        if _kind(sub_folders) in ("studies", "workloads"):
            found += _submission(f.name, Path(f.path), issues)
            continue
        if sub_folders and all(
            _kind(_entries(Path(g.path))[0]) in ("studies", "workloads") for g in sub_folders
        ):
            nested.append(Path(f.path))
        _stray_folder(f, issues)
    _stray_files(files, issues)
    if not found:
        hint = (
            f"; {root} seems to hold one folder per ruleset ({', '.join(p.name for p in nested)}): "
            "pass each with its own --logs"
            if nested
            else " (expected <submission>/study_<k>/<workload>_<jax|pytorch>/trial_<n>/"
            "eval_measurements.csv)"
        )
        raise ScoringError(f"unexpected layout: no trial folders found under {root}{hint}")
    return found
