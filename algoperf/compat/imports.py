"""What a submission's modules see when they import: v0.5 names, removed JAX names, competition paths.

A submission module is executed with its own ``__builtins__`` whose ``__import__`` is a
``SubmissionImporter``. Every ``import`` statement in the module (and in the helper
modules it loads from its folder) goes through it; nothing else in the process does:

* ``algorithmic_efficiency[.spec|.random_utils]`` (v0.5's package) -> ``algoperf.compat.
  algorithmic_efficiency``; ``algorithmic_efficiency.spec`` is ``algoperf.spec`` itself.
* ``jax`` (and ``jax.numpy``, ``jax.experimental.pjit``) -> a read-only view of the real
  module that also has the names newer JAX removed and the submission calls
  (``jax.tree_map`` ..., ``pjit.with_sharding_constraint``, ``jnp.clip(a_min=, a_max=)``),
  each only where the installed JAX lacks it. The real modules are never changed.
* A dotted path that ends in the submission's own folder (the path a helper had in the
  competition's repository, e.g. ``submissions.submissions_algorithms_v0_5.AlgoPerf_Team_16.
  external_tuning.caspr_adaptive.helper``) or a plain sibling name (``helper``) -> that file
  in the submission's folder, loaded once, with this same importer.

Helper modules are registered in ``sys.modules`` under a name private to the submission
(``<submission module>__<dotted name>``), so two submissions with a ``utils.py`` each do
not share one.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import importlib.util
import inspect
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax

V05_PACKAGE = "algorithmic_efficiency"
COMPAT_PACKAGE = "algoperf.compat.algorithmic_efficiency"
# v0.5 module name -> the module that answers for it.
V05_MODULES = {
    V05_PACKAGE: COMPAT_PACKAGE,
    f"{V05_PACKAGE}.spec": "algoperf.spec",
    f"{V05_PACKAGE}.random_utils": f"{COMPAT_PACKAGE}.random_utils",
}

_real_import = builtins.__import__


class V05ModuleNotProvidedError(ModuleNotFoundError):
    """A v0.5 module this compatibility layer does not emulate."""


def _clip_with_old_keywords(clip: Callable[..., Any]) -> Callable[..., Any]:
    """``jnp.clip`` that also takes the ``a``/``a_min``/``a_max`` keywords JAX removed."""

    @functools.wraps(clip)
    def compat_clip(arr: Any = None, /, min: Any = None, max: Any = None, *, a: Any = None,  # noqa: A002
                    a_min: Any = None, a_max: Any = None) -> Any:
        return clip(a if arr is None else arr, min=a_min if min is None else min, max=a_max if max is None else max)

    return compat_clip


@functools.cache
def removed_names() -> dict[str, dict[str, Any]]:
    """Module name -> {name: value} that the installed JAX lacks and older submissions call."""
    tree = jax.tree_util
    wanted: dict[str, dict[str, Any]] = {
        # Removed from the top level in JAX 0.6 (deprecated since 0.4.26); jax.tree_util keeps them.
        "jax": {
            "tree_map": tree.tree_map, "tree_leaves": tree.tree_leaves, "tree_flatten": tree.tree_flatten,
            "tree_unflatten": tree.tree_unflatten, "tree_structure": tree.tree_structure,
            "tree_transpose": tree.tree_transpose, "tree_reduce": tree.tree_reduce, "tree_all": tree.tree_all,
        },
        # pjit's alias of the sharding constraint (v0.5's distributed Shampoo calls it).
        "jax.experimental.pjit": {"with_sharding_constraint": jax.lax.with_sharding_constraint},
    }
    table = {}
    for module_name, names in wanted.items():
        module = importlib.import_module(module_name)
        missing = {name: value for name, value in names.items() if not hasattr(module, name)}
        if missing:
            table[module_name] = missing
    import jax.numpy as jnp

    if "a_min" not in inspect.signature(jnp.clip).parameters:
        table["jax.numpy"] = {"clip": _clip_with_old_keywords(jnp.clip)}
    return table


@functools.cache
def _viewed_modules() -> frozenset[str]:
    """The modules that need a view: those with removed names, and their parents."""
    names = set()
    for module_name in removed_names():
        parts = module_name.split(".")
        names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return frozenset(names)


class ModuleView(types.ModuleType):
    """A module as a submission sees it: the real module's attributes plus the removed names."""

    def __init__(self, real: types.ModuleType, extra: dict[str, Any]):
        super().__init__(real.__name__, real.__doc__)
        for attribute in ("__package__", "__loader__", "__spec__"):  # let these come from the real module
            self.__dict__.pop(attribute, None)
        self.__dict__.update(extra)
        self.__dict__["_algoperf_real_module"] = real

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.__dict__["_algoperf_real_module"], name)
        return module_view(value) if isinstance(value, types.ModuleType) else value

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self.__dict__["_algoperf_real_module"])) | set(self.__dict__))


_views: dict[str, ModuleView] = {}


def module_view(module: Any) -> Any:
    """``module``'s view if older submissions miss names in it (or in its submodules), else itself."""
    name = getattr(module, "__name__", None)
    if not isinstance(module, types.ModuleType) or isinstance(module, ModuleView) or name not in _viewed_modules():
        return module
    if name not in _views:
        _views[name] = ModuleView(module, removed_names().get(name, {}))
    return _views[name]


def _package_chain(dotted: str, leaf: types.ModuleType) -> types.ModuleType:
    """What ``import a.b.c`` binds (``a``): bare modules whose attributes lead to ``leaf``."""
    parts = dotted.split(".")
    child: types.ModuleType = leaf
    for i in range(len(parts) - 1, 0, -1):
        parent = types.ModuleType(".".join(parts[:i]))
        setattr(parent, parts[i], child)
        child = parent
    return child


def _common_suffix(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


class SubmissionImporter:
    """The ``__import__`` of one submission's modules (see the module docstring)."""

    def __init__(self, folder: Path, module_prefix: str):
        self.folder = Path(folder).resolve()
        self.module_prefix = module_prefix
        self.builtins = {**builtins.__dict__, "__import__": self}
        self._loaded: dict[Path, types.ModuleType] = {}
        self._not_local: set[str] = set()
        self._resolved: dict[str, types.ModuleType] = {}

    def install(self, module: types.ModuleType) -> None:
        """Make ``module``'s import statements go through this importer (before it executes)."""
        module.__dict__["__builtins__"] = self.builtins

    def __call__(self, name: str, globals: Any = None, locals: Any = None,  # noqa: A002
                 fromlist: Sequence[str] | None = (), level: int = 0) -> types.ModuleType:
        if level == 0:
            top = name.partition(".")[0]
            if top == V05_PACKAGE:
                return self._v05(name, fromlist)
            if top != "jax":
                local = self._local(name)
                if local is not None:
                    return local if fromlist or "." not in name else _package_chain(name, local)
                # ``from <the folder's own dotted path> import helper``: the same helper modules.
                parts = name.split(".")
                if fromlist and _common_suffix(parts, self.folder.parts) == len(parts):
                    found = {item: self._local(f"{name}.{item}") for item in fromlist if item != "*"}
                    if found and all(m is not None for m in found.values()):
                        return types.SimpleNamespace(**found)  # type: ignore[return-value]
        module = _real_import(name, globals, locals, fromlist, level)
        return module_view(module) if level == 0 and name.partition(".")[0] == "jax" else module

    def _v05(self, name: str, fromlist: Sequence[str] | None) -> types.ModuleType:
        from algoperf.compat.algorithmic_efficiency import PROVIDED

        # ``from algorithmic_efficiency import x`` names the module x in its fromlist.
        wanted = [f"{name}.{item}" for item in fromlist or () if name == V05_PACKAGE and item != "*"]
        missing = next((m for m in [name, *wanted] if m not in V05_MODULES), None)
        if missing is not None:
            raise V05ModuleNotProvidedError(
                f"No module named {missing!r}: algoperf emulates only "
                f"{', '.join(f'{V05_PACKAGE}.{m}' for m in PROVIDED)} of AlgoPerf v0.5 "
                "(docs/submissions.md, 'v0.5-era submissions')",
                name=missing,
            )
        target = V05_MODULES[name]
        module = importlib.import_module(target)
        return module if fromlist else importlib.import_module(COMPAT_PACKAGE)

    def _local(self, name: str) -> types.ModuleType | None:
        """The module of the submission's folder that ``name`` denotes, loaded; None if none."""
        if name in self._resolved:
            return self._resolved[name]
        if name in self._not_local:
            return None
        inside = self._locate(name)
        if inside is None:
            self._not_local.add(name)
            return None
        if (self.folder / f"{inside[0]}.py").is_file():
            module = self._load_file(self.folder / f"{inside[0]}.py", inside[0])
        else:  # a package in the folder: its top loaded here, its submodules by the import system
            package = self._load_file(self.folder / inside[0] / "__init__.py", inside[0], package=True)
            module = importlib.import_module(".".join([package.__name__, *inside[1:]])) if len(inside) > 1 else package
        self._resolved[name] = module
        return module

    def _exists(self, inside: list[str]) -> bool:
        if len(inside) == 1 and (self.folder / f"{inside[0]}.py").is_file():
            return True
        package = self.folder.joinpath(*inside)
        return (self.folder / inside[0] / "__init__.py").is_file() and (
            (package / "__init__.py").is_file() or package.with_suffix(".py").is_file()
        )

    def _locate(self, name: str) -> list[str] | None:
        """The dotted path inside the folder that ``name`` denotes: ``name`` itself (a sibling),
        or what follows the longest run of ``name``'s components that matches the end of the
        folder's own path (the path the folder had in the competition's repository)."""
        parts = name.split(".")
        best: tuple[int, list[str]] | None = None
        for j in range(len(parts)):
            matched = _common_suffix(parts[:j], self.folder.parts)
            if j > 0 and matched == 0:
                continue  # the package part must end in this folder's name
            if self._exists(parts[j:]) and (best is None or matched > best[0]):
                best = (matched, parts[j:])
        return None if best is None else best[1]

    def _load_file(self, file: Path, dotted: str, package: bool = False) -> types.ModuleType:
        if file in self._loaded:
            return self._loaded[file]
        unique = f"{self.module_prefix}__{dotted.replace('.', '__')}"
        spec = importlib.util.spec_from_file_location(
            unique, file, submodule_search_locations=[str(file.parent)] if package else None
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"{file}: not a Python module", name=dotted)
        module = importlib.util.module_from_spec(spec)
        self.install(module)
        self._loaded[file] = module  # before executing: helpers may import each other
        sys.modules[unique] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del self._loaded[file]
            sys.modules.pop(unique, None)
            raise
        return module


def install(module: types.ModuleType, folder: Path, module_prefix: str) -> SubmissionImporter:
    """Give the submission ``module`` (not yet executed) its importer; return the importer."""
    importer = SubmissionImporter(folder, module_prefix)
    importer.install(module)
    return importer
