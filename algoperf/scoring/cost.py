"""Compute cost of a campaign: device-seconds (and money) per trial, workload, submission.

A trial's cost is its number of devices d times its wall-clock time, split three ways
from the last row of its ``eval_measurements.csv`` (AlgoPerf's clocks):

* training  = ``accumulated_submission_time`` (the benchmark's clock),
* eval      = ``accumulated_eval_time``,
* overhead  = wall - training - eval, where wall is the larger of ``total_duration`` (last
  row) and the ``total_duration`` a ``trial_result.json`` records (the time after the last
  eval, data loading, compilation outside the timed steps, logging); never negative.

Device-seconds c = d * wall; device-hours c / 3600; with a price p (USD per device-hour)
of the trial's device kind, money = p * c / 3600. Sums go trial -> workload ->
submission -> total, so the total is exactly sum_trials d_i * wall_i.

The cost *to reach the target* of a submission on a workload is d times the time that
scores (the median over studies of the chosen trial's time to target, training clock
only, as the score counts it); a miss has no cost to target.

The device count and kind come from the trial's ``meta_data_<p>.json``
(``hardware.device_count``, ``hardware.device_kind``); AlgoPerf's published logs record
neither, so ``--devices N`` supplies the count (else 1, with a warning).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from algoperf.scoring.errors import ScoringError
from algoperf.scoring.logs import TIME_COLUMN, TrialLog

_EVAL = "accumulated_eval_time"
_TOTAL = "total_duration"
ANY_DEVICE = "*"


@dataclass(frozen=True)
class CostOptions:
    """``--devices`` (where the meta data lacks a count) and ``--price`` (USD per device-hour)."""

    devices: int | None = None
    prices: dict[str, float] = field(default_factory=dict)  # device kind (lower case) or "*"

    def price(self, kind: str) -> float | None:
        return self.prices.get(kind.lower(), self.prices.get(ANY_DEVICE))


def parse_prices(values: Sequence[str]) -> dict[str, float]:
    """``["cpu=0.05", "NVIDIA H100=2.5", "3"]`` -> {"cpu": 0.05, "nvidia h100": 2.5, "*": 3.0}."""
    prices: dict[str, float] = {}
    for value in values:
        kind, sep, amount = value.rpartition("=")
        kind = kind.strip().lower() if sep else ANY_DEVICE
        try:
            usd = float(amount)
        except ValueError:
            usd = float("nan")
        if not kind or not math.isfinite(usd) or usd < 0:
            raise ScoringError(
                f"--price {value!r}: write DEVICE=USD_PER_HOUR (e.g. cpu=0.05, or 'NVIDIA "
                "H100=2.5'; the device kind as meta_data_*.json records it) or USD_PER_HOUR "
                "for every device"
            )
        prices[kind] = usd
    return prices


@dataclass(frozen=True)
class TrialCost:
    submission: str
    workload: str
    study: int
    trial: int
    devices: int
    device_kind: str
    train_s: float
    eval_s: float
    overhead_s: float
    devices_known: bool = True

    @property
    def wall_s(self) -> float:
        return self.train_s + self.eval_s + self.overhead_s

    @property
    def device_s(self) -> float:
        return self.devices * self.wall_s


@dataclass
class CampaignCost:
    """Every trial's cost and the sums the tables show (see the module docstring)."""

    trials: list[TrialCost]
    options: CostOptions
    to_target: dict[tuple[str, str], float]  # (submission, workload) -> device-seconds
    notes: list[str] = field(default_factory=list)

    def sums(self, key: str) -> dict[tuple, dict[str, float]]:
        """Device-seconds by ``key`` ("workload": (sub, workload); "submission": (sub,))."""
        out: dict[tuple, dict[str, float]] = {}
        for t in self.trials:
            k = (t.submission, t.workload) if key == "workload" else (t.submission,)
            row = out.setdefault(k, {"train": 0.0, "eval": 0.0, "overhead": 0.0, "total": 0.0, "usd": 0.0})
            row["train"] += t.devices * t.train_s
            row["eval"] += t.devices * t.eval_s
            row["overhead"] += t.devices * t.overhead_s
            row["total"] += t.device_s
            row["usd"] += self.usd(t)
        return out

    def usd(self, t: TrialCost) -> float:
        price = self.options.price(t.device_kind)
        return float("nan") if price is None else price * t.device_s / 3600.0

    @property
    def total_device_s(self) -> float:
        return float(sum(t.device_s for t in self.trials))

    @property
    def total_usd(self) -> float | None:
        if not self.options.prices:
            return None
        return float(sum(self.usd(t) for t in self.trials))


def _last_row(path: Path) -> dict[str, float]:
    """The numeric cells of the last complete row of an eval_measurements.csv ({} if none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) < 2:
        return {}
    head = rows[0]
    for row in reversed(rows[1:]):
        if len(row) == len(head):
            out = {}
            for k, v in zip(head, row, strict=True):
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
            return out
    return {}


def _meta(folder: Path) -> tuple[int | None, str, float]:
    """(device count, device kind, trial_result's total_duration) a trial folder records."""
    count, kind, total = None, "unknown", 0.0
    for meta in sorted(folder.glob("meta_data_*.json"))[:1]:
        try:
            hw = json.loads(meta.read_text()).get("hardware") or {}
        except (OSError, ValueError, AttributeError):
            hw = {}
        if isinstance(hw.get("device_count"), int) and hw["device_count"] > 0:
            count = hw["device_count"]
        kind = str(hw.get("device_kind") or kind)
    try:
        result = json.loads((folder / "trial_result.json").read_text())
        total = float(result.get(_TOTAL) or 0.0)
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return count, kind, total


def trial_cost(record: TrialLog, options: CostOptions) -> TrialCost:
    """The cost of one trial from its log file and meta data (see the module docstring)."""
    last: dict[str, float] = {}
    count, kind, result_total = None, "unknown", 0.0
    if record.source.endswith(".csv"):
        path = Path(record.source)
        last = _last_row(path)
        count, kind, result_total = _meta(path.parent)
    train = last.get(TIME_COLUMN, float(record.times[-1]) if record.times.size else 0.0)
    train = train if math.isfinite(train) else 0.0
    ev = last.get(_EVAL, 0.0)
    ev = ev if math.isfinite(ev) else 0.0
    wall = max(last.get(_TOTAL, 0.0), result_total, train + ev)
    known = count is not None or options.devices is not None
    devices = count if count is not None else (options.devices or 1)
    return TrialCost(
        submission=record.submission,
        workload=record.workload,
        study=record.study,
        trial=record.trial,
        devices=devices,
        device_kind=kind,
        train_s=train,
        eval_s=ev,
        overhead_s=max(wall - train - ev, 0.0),
        devices_known=known,
    )


def campaign_cost(
    records: Sequence[TrialLog], table, result, options: CostOptions
) -> CampaignCost:
    """The cost of every trial of ``records`` and each scored time's cost to target."""
    trials = [trial_cost(r, options) for r in records]
    cost = CampaignCost(trials=trials, options=options, to_target={})
    unknown = sum(not t.devices_known for t in trials)
    if unknown:
        cost.notes.append(
            f"{unknown} of {len(trials)} trials record no device count: counted as 1 device "
            "(pass --devices N)"
        )
    devices: dict[tuple[str, str], list[int]] = {}
    for t in trials:
        devices.setdefault((t.submission, t.workload), []).append(t.devices)
    for i, sub in enumerate(result.submissions):
        for j, w in enumerate(result.workloads):
            t = float(result.raw_times[i, j])
            if math.isfinite(t) and (sub, w) in devices:
                cost.to_target[sub, w] = float(np.median(devices[sub, w])) * t
    return cost


def write_cost_csv(reports: Sequence, path: Path) -> Path:
    """cost.csv: one row per trial, workload, submission and ruleset total."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(
            ["ruleset", "level", "submission", "workload", "study", "trial", "devices",
             "device_kind", "train_device_s", "eval_device_s", "overhead_device_s",
             "device_s", "device_h", "usd", "to_target_device_s"]
        )
        for rep in reports:
            cost: CampaignCost | None = rep.cost
            if cost is None:
                continue
            rs = rep.ruleset
            for t in cost.trials:
                usd = cost.usd(t)
                out.writerow([rs, "trial", t.submission, t.workload, t.study, t.trial, t.devices,
                              t.device_kind, t.devices * t.train_s, t.devices * t.eval_s,
                              t.devices * t.overhead_s, t.device_s, t.device_s / 3600,
                              usd if math.isfinite(usd) else None, None])
            for level, sums in (("workload", cost.sums("workload")), ("submission", cost.sums("submission"))):
                for key, row in sums.items():
                    w = key[1] if level == "workload" else None
                    target = cost.to_target.get(key) if level == "workload" else None  # type: ignore[call-overload]
                    out.writerow([rs, level, key[0], w, None, None, None, None, row["train"],
                                  row["eval"], row["overhead"], row["total"], row["total"] / 3600,
                                  row["usd"] if math.isfinite(row["usd"]) else None, target])
            total_usd = cost.total_usd
            out.writerow([rs, "total", None, None, None, None, None, None, None, None, None,
                          cost.total_device_s, cost.total_device_s / 3600,
                          total_usd if total_usd is not None and math.isfinite(total_usd) else None, None])
    return path
