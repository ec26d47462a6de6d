"""Load a submission module by name or path and check it against ``algoperf.spec``.

A submission is a Python file (usually ``<folder>/submission.py``) defining AlgoPerf's
functions; a ``tuning_search_space.json`` beside it is its search space. Loading
validates everything before any training, so a broken submission fails in a second
with one message naming the file and the function or key at fault.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from algoperf import registry, spec
from algoperf.compat import imports as compat_imports
from algoperf.compat.pmap_adapter import drive_as
from algoperf.compat.style import choose_style
from algoperf.submission import search_space as tuning
from algoperf.submission.batch_size import BatchSizeChoice, choose_batch_size

SEARCH_SPACE_FILE = "tuning_search_space.json"

# The functions AlgoPerf's runner calls with keywords must use these parameter names;
# those it calls positionally must take this many parameters.
KEYWORD_CALLED = {
    "update_params": [
        "workload", "current_param_container", "current_params_types", "model_state",
        "hyperparameters", "batch", "loss_type", "optimizer_state", "eval_results",
        "global_step", "rng",
    ],
    "prepare_for_eval": [
        "workload", "current_param_container", "current_params_types", "model_state",
        "hyperparameters", "loss_type", "optimizer_state", "eval_results", "global_step", "rng",
    ],
}
POSITIONALLY_CALLED = {"init_optimizer_state": 5, "data_selection": 8, "get_batch_size": 1}
REQUIRED = ("init_optimizer_state", "update_params", "data_selection", "get_batch_size")


class SubmissionError(Exception):
    """A submission that cannot run; the message says where and what to fix."""


@dataclass
class Submission:
    """A loaded, validated submission."""

    name: str
    path: Path
    module: Any
    init_optimizer_state: Callable[..., Any]
    update_params: Callable[..., Any]
    data_selection: Callable[..., Any]
    get_batch_size: Callable[[str], int]
    prepare_for_eval: Callable[..., Any] | None
    needs_train_state: bool
    search_space: tuning.SearchSpace | None
    source_hash: str
    style: str = "jit"  # "pmap": driven through algoperf.compat.pmap_adapter
    style_reason: str = ""

    def batch_size_for(
        self, workload: spec.Workload, workload_name: str, overrides: dict[str, int] | None = None
    ) -> BatchSizeChoice:
        """The global batch size for ``workload`` and where it came from (``algoperf.submission.batch_size``)."""
        return choose_batch_size(self.get_batch_size, workload, workload_name, overrides, where=str(self.path))


def _import(path: Path) -> Any:
    module_name = f"algoperf_submission_{path.parent.name}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise SubmissionError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(module_spec)
    compat_imports.install(module, path.parent, module_name)  # v0.5 names, removed JAX names (this module only)
    sys.path.insert(0, str(path.parent))  # sibling helper modules import as in AlgoPerf
    try:
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(module_name, None)
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == str(path)]
        line = f" (line {frames[-1].lineno})" if frames else ""
        raise SubmissionError(f"{path}{line}: importing the submission failed: {type(e).__name__}: {e}") from e
    finally:
        sys.path.remove(str(path.parent))
    return module


def _check_signature(path: Path, name: str, fn: Any) -> bool:
    """Raise SubmissionError if ``fn`` cannot be called as AlgoPerf calls ``name``.

    Returns whether ``fn`` takes ``train_state`` (update_params only).
    """
    if not callable(fn):
        raise SubmissionError(f"{path}: {name} must be a function, got {type(fn).__name__}")
    params = list(inspect.signature(fn).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params) and name in KEYWORD_CALLED:
        # AlgoPerf passes train_state only to an update_params that names it.
        return name == "update_params" and "train_state" in [p.name for p in params]
    names = [p.name for p in params]
    if name in KEYWORD_CALLED:
        expected = KEYWORD_CALLED[name]
        extra = [n for n in names if n not in expected and n != "train_state"]
        missing = [n for n in expected if n not in names]
        if missing or extra:
            raise SubmissionError(
                f"{path}: {name}({', '.join(names)}) does not match the AlgoPerf API "
                f"{name}({', '.join(expected)}{', train_state=None' if name == 'update_params' else ''})"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; unexpected: {', '.join(extra)}" if extra else "")
            )
        return "train_state" in names
    count = POSITIONALLY_CALLED[name]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    takes_var = any(p.kind is p.VAR_POSITIONAL for p in params)
    if len(required) > count or (len(positional) < count and not takes_var):
        raise SubmissionError(
            f"{path}: {name} must take {count} positional argument(s) as in algoperf.spec.{name}; "
            f"it takes ({', '.join(names)})"
        )
    return False


# Files that mark the root of a project a submission may live in (AlgoPerf runs from its
# repository root, so `from algorithms.x import y` and `from submissions.x import y` resolve).
PROJECT_ROOT_MARKERS = (".git", "pyproject.toml", "setup.py", "setup.cfg", "submission_runner.py")


# Folder names that say which framework, not which algorithm (AlgoPerf's
# archived_paper_baselines/<algorithm>/jax/submission.py).
FRAMEWORK_FOLDERS = ("jax", "pytorch", "torch")


def submission_name(path: Path) -> str:
    """A submission's name: its folder's for a ``submission.py`` (with the algorithm's
    folder in front where that folder only names the framework: ``adamw_jax``), else the
    file's stem."""
    if path.name != "submission.py":
        return path.stem
    folder = path.resolve().parent
    if folder.name in FRAMEWORK_FOLDERS:
        return f"{folder.parent.name}_{folder.name}"
    return folder.name


def package_root(path: Path) -> Path | None:
    """The nearest folder above a submission file that holds a project-root marker, if any."""
    for folder in path.resolve().parent.parents:
        if any((folder / marker).exists() for marker in PROJECT_ROOT_MARKERS):
            return folder
    return None


def load_submission(
    name_or_path: str | Path, search_space_path: str | Path | None = None, style: str = "auto"
) -> Submission:
    """Find, import and validate a submission; raise SubmissionError on any problem.

    The submission's folder is on ``sys.path`` while it imports (sibling helper modules),
    and its project root (``package_root``) stays on it, appended, so imports written from
    that root resolve at import and at run time. ``search_space_path`` replaces the
    ``tuning_search_space.json`` beside the submission (AlgoPerf's --tuning_search_space).
    ``style`` ('auto', 'jit', 'pmap'): the convention the submission is driven by
    (``algoperf.compat.style``; 'auto' reads it from the source).
    """
    try:
        path = registry.resolve_submission(name_or_path)
    except registry.UnknownNameError as e:
        raise SubmissionError(str(e)) from e
    try:
        chosen = choose_style(path, style)
    except ValueError as e:
        raise SubmissionError(str(e)) from e
    root = package_root(path)
    if root is not None and str(root) not in sys.path:
        sys.path.append(str(root))
    module = _import(path)
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        raise SubmissionError(
            f"{path}: missing required function(s) {', '.join(missing)}; "
            "a submission defines init_optimizer_state, update_params, data_selection, get_batch_size "
            "(and optionally prepare_for_eval), as in algoperf.spec"
        )
    needs_train_state = False
    for name in (*REQUIRED, "prepare_for_eval"):
        if hasattr(module, name):
            takes = _check_signature(path, name, getattr(module, name))
            needs_train_state = needs_train_state or (name == "update_params" and takes)
    space_path = Path(search_space_path) if search_space_path is not None else path.parent / SEARCH_SPACE_FILE
    if search_space_path is not None and not space_path.is_file():
        raise SubmissionError(f"--tuning-search-space {space_path}: no such file")
    try:
        search_space = tuning.load_search_space(space_path) if space_path.exists() else None
    except tuning.SearchSpaceError as e:
        raise SubmissionError(str(e)) from e
    digest = hashlib.sha256(path.read_bytes())
    if space_path.exists():
        digest.update(space_path.read_bytes())
    submission = Submission(
        name=submission_name(path),
        path=path,
        module=module,
        init_optimizer_state=module.init_optimizer_state,
        update_params=module.update_params,
        data_selection=module.data_selection,
        get_batch_size=module.get_batch_size,
        prepare_for_eval=getattr(module, "prepare_for_eval", None),
        needs_train_state=needs_train_state,
        search_space=search_space,
        source_hash=digest.hexdigest()[:12],
    )
    return drive_as(submission, chosen.style, chosen.reason, chosen.axis_name)
