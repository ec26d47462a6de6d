"""Workload targets, runtime budgets and metric directions.

Targets come in the structure of AlgoPerf's ``workload_targets*.json`` files::

    {"benchmark_version": "0.6",
     "base_workloads": [...], "held_out_workloads": [...],
     "workloads": {name: {"target_metric_name": "loss", "validation_target_value": 0.12,
                          "step_hint": 10666, "max_allowed_runtime_sec": 7703}}}

either from a file (``--targets``) or from our own workload registry
(:func:`algoperf.registry.workload_targets`). ``max_allowed_runtime_sec`` and
``target_metric_goal`` ("minimize"/"maximize") are optional per workload.

Runtime budgets. AlgoPerf's published targets files carry no budgets, so the
external-tuning budget of every AlgoPerf workload is kept here, per benchmark version
(:data:`EXTERNAL_BUDGETS_SEC`; v0.6 from our spec sheets ``shared/specs/*.md``, v0.5 from
the "old budgets" table of the reference's ``scoring/compute_speedups.py``). The
self-tuning ruleset gets a multiple of it (:data:`SELF_TUNING_FACTOR`): 3x in v0.5
(reference ``compute_speedups.py``; the v0.5 self-tuning logs indeed run to 3x, e.g.
imagenet_resnet to 188,896 s of 3 x 63,008 s), 1.5x since v0.6 (reference
``submission_runner.py``/``scoring/config.py``). Held-out variants inherit their base
workload's budget. A budget given in the targets themselves wins over this table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from algoperf import target_rule
from algoperf.scoring.errors import ScoringError

# --- budgets: the one place for these constants ----------------------------------------

#: External-tuning ``max_allowed_runtime_sec`` per AlgoPerf workload and benchmark version.
EXTERNAL_BUDGETS_SEC: dict[str, dict[str, float]] = {
    "0.5": {
        "criteo1tb": 7_703,
        "fastmri": 8_859,
        "imagenet_resnet": 63_008,
        "imagenet_vit": 77_520,
        "librispeech_conformer": 61_068,
        "librispeech_deepspeech": 55_506,
        "ogbg": 18_477,
        "wmt": 48_151,
    },
    "0.6": {
        "criteo1tb": 7_703,
        "fastmri": 4_430,
        "imagenet_resnet": 66_159,
        "imagenet_vit": 69_768,
        "librispeech_conformer": 58_015,
        "librispeech_deepspeech": 44_405,
        "ogbg": 12_011,
        "wmt": 43_336,
        "finewebedu_lm": 31_967,
        "mnist": 60,
        "cifar": 3_600,
    },
}

#: Self-tuning budget = this factor x the external-tuning budget.
SELF_TUNING_FACTOR: dict[str, float] = {"0.5": 3.0, "0.6": 1.5}

#: The rules version used when the targets name none we know (our own registry).
LATEST_VERSION = "0.6"

RULESETS = ("external", "self")

# --- metric direction: algoperf.target_rule ----------------------------------------------


def higher_is_better(metric: str) -> bool:
    """Direction of a validation metric from its name (``algoperf.target_rule``), as a ScoringError."""
    try:
        return target_rule.higher_is_better(metric)
    except target_rule.UnknownMetricDirectionError as e:
        raise ScoringError(str(e)) from None


# --- targets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkloadTarget:
    """Scoring constants of one workload (name without framework suffix)."""

    name: str
    metric: str  # e.g. "accuracy"; the log column is "validation/<metric>"
    target: float
    higher_is_better: bool
    step_hint: int | None = None
    max_runtime_sec: float | None = None  # external-tuning budget, if the source gives one

    @property
    def column(self) -> str:
        return f"validation/{self.metric}"

    def reached(self, value: float) -> bool:
        """Whether one metric value reaches the target (``algoperf.target_rule.reached``)."""
        return target_rule.reached(self.column, value, self.target, higher=self.higher_is_better)


@dataclass(frozen=True)
class Targets:
    """Targets of a benchmark version: base and held-out workload names and each target."""

    workloads: Mapping[str, WorkloadTarget]
    base_workloads: tuple[str, ...] = ()
    held_out_workloads: tuple[str, ...] = ()
    benchmark_version: str | None = None
    source: str = "?"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def get(self, workload: str) -> WorkloadTarget:
        """The target of ``workload``; a :class:`ScoringError` saying how to give one."""
        try:
            return self.workloads[workload]
        except KeyError:
            raise ScoringError(
                f"no target known for workload {workload!r} (targets from {self.source}): "
                "give one with --targets FILE, a JSON in the format of AlgoPerf's "
                'workload_targets.json with an entry for it under "workloads"'
            ) from None

    def base_of(self, workload: str) -> str | None:
        """The base workload a variant belongs to (longest base name it extends)."""
        if workload in self.base_workloads:
            return workload
        matches = [b for b in self.base_workloads if workload.startswith(b + "_")]
        return max(matches, key=len) if matches else None

    def rules_version(self) -> str:
        """``"0.5"`` or ``"0.6"`` from benchmark_version; the latest for anything else."""
        return normalise_version(self.benchmark_version) or LATEST_VERSION


def normalise_version(version: str | None) -> str | None:
    """``"v0.5"``, ``"0.5.0"`` -> ``"0.5"``; None for versions we have no table for."""
    if version is None:
        return None
    match = re.fullmatch(r"v?(\d+\.\d+)(\.\d+)?", str(version).strip())
    if match and match.group(1) in EXTERNAL_BUDGETS_SEC:
        return match.group(1)
    return None


def targets_from_dict(raw: Mapping[str, Any], source: str) -> Targets:
    """Build :class:`Targets` from the workload_targets JSON structure."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("workloads"), Mapping):
        raise ScoringError(
            f'{source}: not a workload targets file (expected a "workloads" object, as in '
            "AlgoPerf's workload_targets.json)"
        )
    workloads: dict[str, WorkloadTarget] = {}
    for name, spec in raw["workloads"].items():
        try:
            metric = str(spec["target_metric_name"])
            target = float(spec["validation_target_value"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ScoringError(
                f"{source}: workload {name!r} needs target_metric_name and a numeric "
                f"validation_target_value ({exc!s})"
            ) from None
        goal = spec.get("target_metric_goal")
        if goal is None:
            higher = higher_is_better(metric)
        elif goal in ("minimize", "maximize"):
            higher = goal == "maximize"
        else:
            raise ScoringError(
                f"{source}: workload {name!r}: target_metric_goal must be minimize or "
                f"maximize, not {goal!r}"
            )
        budget = spec.get("max_allowed_runtime_sec")
        hint = spec.get("step_hint")
        workloads[name] = WorkloadTarget(
            name=name,
            metric=metric,
            target=target,
            higher_is_better=higher,
            step_hint=None if hint is None else int(hint),
            max_runtime_sec=None if budget is None else float(budget),
        )
    version = raw.get("benchmark_version")
    return Targets(
        workloads=workloads,
        base_workloads=tuple(raw.get("base_workloads") or ()),
        held_out_workloads=tuple(raw.get("held_out_workloads") or ()),
        benchmark_version=None if version is None else str(version),
        source=source,
    )


def load_targets(path: str | Path) -> Targets:
    """Read a targets JSON file (AlgoPerf's workload_targets format)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ScoringError(f"targets file not found: {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ScoringError(f"cannot read targets file {path}: {exc}") from None
    return targets_from_dict(raw, str(path))


def registry_targets() -> Targets | None:
    """Targets of our own workload registry, or None where the registry offers none."""
    try:
        from algoperf.registry import workload_targets

        raw = workload_targets()
    except (ImportError, AttributeError):
        return None
    return targets_from_dict(raw, "the algoperf workload registry")


def runtime_budget(
    workload: str, targets: Targets, ruleset: str, version: str | None = None
) -> float | None:
    """Runtime budget in seconds of ``workload`` under ``ruleset`` ("external" or "self").

    budget = external budget x (1 for external tuning, SELF_TUNING_FACTOR[version] for
    self-tuning). The external budget is the targets' max_allowed_runtime_sec if given,
    else :data:`EXTERNAL_BUDGETS_SEC` of the version, looked up for the workload and
    then for its base workload. None where neither knows one.
    """
    if ruleset not in RULESETS:
        raise ScoringError(f"unknown ruleset {ruleset!r}: use one of {', '.join(RULESETS)}")
    version = normalise_version(version) or targets.rules_version()
    table = EXTERNAL_BUDGETS_SEC[version]
    base = targets.base_of(workload) or workload
    external: float | None = None
    for name in (workload, base):
        spec = targets.workloads.get(name)
        if spec is not None and spec.max_runtime_sec is not None:
            external = spec.max_runtime_sec
            break
        if name in table:
            external = float(table[name])
            break
    if external is None:
        return None
    return external * (SELF_TUNING_FACTOR[version] if ruleset == "self" else 1.0)
