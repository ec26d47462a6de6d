"""Names to implementations: workloads and submissions.

Built-in workloads live in ``algoperf.workloads.<package>`` (the repository's
``workloads/`` folder); each package exports ``WORKLOADS = {name: WorkloadClass}``.
Third-party packages add theirs through the ``algoperf.workloads`` entry-point group
(each entry point loads such a dict). Built-in submissions are the folders of
``algoperf.submissions`` that hold a ``submission.py``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import pkgutil
from pathlib import Path
from typing import Any

from algoperf import spec

ENTRY_POINT_GROUP = "algoperf.workloads"


class UnknownNameError(LookupError):
    """A workload or submission name that is not registered."""


# Workload packages that failed to import: name -> error (reported when a name is unknown).
_BROKEN: dict[str, str] = {}


@functools.cache
def _workload_classes() -> dict[str, type[spec.Workload]]:
    import algoperf.workloads as package

    classes: dict[str, type[spec.Workload]] = {}
    sources = [
        (info.name, functools.partial(importlib.import_module, f"{package.__name__}.{info.name}"))
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name)
        if info.ispkg
    ]
    sources += [(ep.name, ep.load) for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)]
    for source, load in sources:
        # One broken workload package must not take the others down with it.
        try:
            loaded = load()
        except Exception as e:  # noqa: BLE001
            _BROKEN[source] = f"{type(e).__name__}: {e}"
            continue
        classes.update(getattr(loaded, "WORKLOADS", loaded if isinstance(loaded, dict) else {}))
    return classes


def workload_names() -> list[str]:
    """Every registered workload name, sorted."""
    return sorted(_workload_classes())


def get_workload_class(name: str) -> type[spec.Workload]:
    classes = _workload_classes()
    if name not in classes:
        broken = "".join(f"; workload package {k!r} failed to import: {v}" for k, v in _BROKEN.items())
        raise UnknownNameError(
            f"unknown workload {name!r}; known workloads: {', '.join(sorted(classes))} "
            f"(run `algoperf workloads` to list them){broken}"
        )
    return classes[name]


def get_workload(name: str, **kwargs: Any) -> spec.Workload:
    """A fresh instance of workload ``name``."""
    return get_workload_class(name)(**kwargs)


def workload_info(name: str) -> dict[str, Any]:
    """Targets, budget and metadata of ``name``, without building its model or data."""
    cls = get_workload_class(name)
    return {
        "name": name,
        "description": cls.description,
        "data_source": cls.data_source,
        "target_metric_name": cls.target_metric_name,
        "validation_target_value": cls.validation_target_value,
        "test_target_value": cls.test_target_value,
        "max_allowed_runtime_sec": cls.max_allowed_runtime_sec,
        "eval_period_time_sec": cls.eval_period_time_sec,
        "step_hint": cls.step_hint,
        "base_workload": getattr(cls, "base_workload", None) or name,
    }


def workload_targets() -> dict[str, Any]:
    """Our workloads' targets in the structure of AlgoPerf's workload_targets JSON."""
    infos = {name: workload_info(name) for name in workload_names()}
    keys = ("target_metric_name", "validation_target_value", "step_hint", "max_allowed_runtime_sec")
    return {
        "benchmark_version": "algoperf-small",
        "base_workloads": [n for n, i in infos.items() if i["base_workload"] == n],
        "held_out_workloads": [n for n, i in infos.items() if i["base_workload"] != n],
        "workloads": {n: {k: i[k] for k in keys} for n, i in infos.items()},
    }


def _submissions_root() -> Path:
    import algoperf.submissions as package

    return Path(package.__path__[0])


def submission_names() -> list[str]:
    """Every built-in submission name, sorted: its folder under the submissions root.

    Nested folders are named by their relative path (``leaderboard_v05/cyclic_lr``), so a
    port never shadows a top-level built-in of the same last name.
    """
    root = _submissions_root()
    return sorted(p.parent.relative_to(root).as_posix() for p in root.rglob("submission.py"))


def builtin_submission_name(path: str | Path) -> str | None:
    """The built-in name of a submission file or folder, None where it is not a built-in."""
    file = Path(path)
    file = (file / "submission.py" if file.is_dir() else file).resolve()
    root = _submissions_root().resolve()
    if file.name != "submission.py" or not file.is_file() or not file.is_relative_to(root):
        return None
    return file.parent.relative_to(root).as_posix()


def resolve_submission(name_or_path: str | Path) -> Path:
    """The submission.py file for a built-in name, a folder or a file path."""
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "submission.py"
    if path.is_file():
        return path.resolve()
    name = str(name_or_path).strip("/")
    if ".." not in Path(name).parts:  # a built-in name never leaves the submissions root
        builtin = _submissions_root() / name / "submission.py"
        if builtin.is_file():
            return builtin
    raise UnknownNameError(
        f"no submission at {str(name_or_path)!r}: give a built-in name "
        f"({', '.join(submission_names()) or 'none installed'}), a folder holding "
        "submission.py, or the path of a submission module"
    )


def register_workload(name: str, cls: type[spec.Workload]) -> None:
    """Add a workload class under ``name`` in this process (plug-ins, tests, notebooks)."""
    _workload_classes()[name] = cls
