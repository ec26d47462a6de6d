"""Which convention a submission is written in: pmap (v0.5 era) or jit (v0.6).

pmap-style code keeps params and optimizer state replicated per device
(``flax.jax_utils.replicate``), takes batches shaped (devices, per-device batch, ...) and
steps with ``jax.pmap``. jit-style code takes global batches and unreplicated params.
The convention is read from what the code does (its syntax tree), not from which package
it imports: some published submissions that import ``algoperf`` are pmap-style too.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

STYLES = ("auto", "jit", "pmap")


@dataclass(frozen=True)
class StyleChoice:
    """The convention a submission is driven by, and why."""

    style: str  # "jit" or "pmap"
    reason: str
    # The axis name the submission's pmap uses, when it is written as a constant (the
    # adapter lays arrays out on a mesh axis of that name, as pmap returns them).
    axis_name: str | None = None


def _parse(path: Path) -> ast.Module | None:
    """The syntax tree of ``path``; None for a file that does not parse (its import fails later,
    with the submission loader's message)."""
    try:
        return ast.parse(path.read_text(encoding="utf-8", errors="replace"), str(path))
    except SyntaxError:
        return None


def _pmap_signs(tree: ast.Module, filename: str) -> list[str]:
    """Where ``tree`` uses pmap or flax's per-device replication ("file:line what")."""
    signs = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Attribute) and node.attr == "pmap":
            what = "jax.pmap"
        elif isinstance(node, ast.Attribute) and node.attr in ("replicate", "unreplicate") and (
            isinstance(node.value, ast.Name) and node.value.id == "jax_utils"
            or isinstance(node.value, ast.Attribute) and node.value.attr == "jax_utils"
        ):
            what = f"jax_utils.{node.attr}"
        elif isinstance(node, ast.ImportFrom) and node.module in ("jax", "flax.jax_utils"):
            names = {a.name for a in node.names} & {"pmap", "replicate", "unreplicate"}
            what = ", ".join(f"{node.module}.{n}" for n in sorted(names)) or None
        if what:
            signs.append(f"{Path(filename).name}:{node.lineno} {what}")
    return signs


def _is_pmap(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "pmap" or isinstance(node, ast.Name) and node.id == "pmap"


def pmap_axis_names(tree: ast.Module) -> set[str]:
    """The constant ``axis_name=`` values of ``jax.pmap(...)`` and ``partial(jax.pmap, ...)`` calls."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (_is_pmap(node.func) or any(_is_pmap(a) for a in node.args)):
            names.update(k.value.value for k in node.keywords if k.arg == "axis_name"
                         and isinstance(k.value, ast.Constant) and isinstance(k.value.value, str))
    return names


def _imported_names(tree: ast.Module) -> set[str]:
    """Every component of every module name ``tree`` imports."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(part for alias in node.names for part in alias.name.split("."))
        elif isinstance(node, ast.ImportFrom):
            names.update((node.module or "").split("."))
            names.update(alias.name for alias in node.names)
    return names


def detect_style(path: Path) -> StyleChoice:
    """The convention of the submission file ``path``: its own source, then the helper
    modules of its folder that it imports (a pmap step may live in a helper)."""
    tree = _parse(path)
    imported = _imported_names(tree) if tree is not None else set()
    helpers = sorted(p for p in path.parent.glob("*.py") if p != path and p.stem in imported)
    parsed = [(path, tree), *((helper, _parse(helper)) for helper in helpers)]
    trees = [(file, t) for file, t in parsed if t is not None]
    axis_names = set().union(*(pmap_axis_names(t) for _, t in trees))
    axis_name = axis_names.pop() if len(axis_names) == 1 else None
    signs = [sign for file, t in trees for sign in _pmap_signs(t, str(file))]
    # A pmap makes it pmap-style; flax's replicate alone does not (a published jit-style
    # submission replicates its optimizer state and steps with jax.jit).
    if any("pmap" in sign for sign in signs):
        shown = "; ".join(signs[:3]) + (f" (+{len(signs) - 3} more)" if len(signs) > 3 else "")
        return StyleChoice("pmap", f"detected: {shown}", axis_name)
    if signs:
        return StyleChoice("jit", f"detected: no pmap in its source (only {signs[0]})")
    return StyleChoice("jit", "detected: no pmap or per-device replication in its source")


def choose_style(path: Path, requested: str) -> StyleChoice:
    """``requested`` ('jit'/'pmap', forced) or, for 'auto', what the source shows."""
    if requested not in STYLES:
        raise ValueError(f"--submission-style {requested!r}: choose one of {', '.join(STYLES)}")
    detected = detect_style(path)
    if requested == "auto":
        return detected
    return StyleChoice(requested, "forced with --submission-style", detected.axis_name)
