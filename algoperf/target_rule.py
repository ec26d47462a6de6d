"""The one rule that says whether a metric value reaches its target.

Used by every part that decides it: the trial runner (``spec.Workload.has_reached_*``,
so when a trial stops and its time to result), the MLflow tags (which read the
runner's decision), scoring (``algoperf.scoring``) and target setting
(``algoperf.target_setting``).

The rule is AlgoPerf's scorer's (``scoring/performance_profile.py``): a value reaches the
target when it is at least as good,

    reached = value >= target   for a metric where higher is better,
    reached = value <= target   for a metric where lower is better,

and NaN never reaches. AlgoPerf's runner stops training on a strict comparison
(``>``/``<`` in its workloads), so a value exactly equal to the target counts for the
score but does not stop an AlgoPerf trial; here it does both. docs/differences.md has
the reason.

Direction comes from the metric's name, split into words at any non-alphanumeric
character: a word in :data:`LOWER_IS_BETTER` means lower is better, a word in
:data:`HIGHER_IS_BETTER` higher; a name with neither (or both) is refused rather than
guessed. AlgoPerf's scorer lists ce_loss, error_rate, ctc_loss, wer, l1_loss, loss as
minimised and mean_average_precision, ssim, accuracy, bleu as maximised; every one of
them is decided the same way here.
"""

from __future__ import annotations

import math
import re

#: Words of a metric name that mean a smaller value is better.
LOWER_IS_BETTER = frozenset({"loss", "error", "wer", "cer", "ppl", "perplexity", "mae"})
#: Words of a metric name that mean a larger value is better.
HIGHER_IS_BETTER = frozenset(
    {"accuracy", "acc", "ssim", "bleu", "precision", "map", "psnr", "auc", "f1", "iou"}
)

_SPLITS = ("validation/", "test/", "train/")


class UnknownMetricDirectionError(ValueError):
    """A metric name says neither that higher nor that lower is better."""


def higher_is_better(metric_name: str) -> bool:
    """Whether a larger value of ``metric_name`` is better (split prefix ignored).

    ``validation/accuracy`` -> True, ``ce_loss`` -> False, ``test/wer`` -> False.
    Raises :class:`UnknownMetricDirectionError` for a name with no known word.
    """
    name = metric_name.lower()
    for prefix in _SPLITS:
        name = name.removeprefix(prefix)
    words = set(re.split(r"[^a-z0-9]+", name))
    lower, higher = bool(words & LOWER_IS_BETTER), bool(words & HIGHER_IS_BETTER)
    if lower == higher:
        raise UnknownMetricDirectionError(
            f"cannot tell whether metric {metric_name!r} is better high or low: name it with one of "
            f"{sorted(HIGHER_IS_BETTER)} (higher is better) or {sorted(LOWER_IS_BETTER)} (lower is better)"
            " or, in a targets JSON, give \"target_metric_goal\": \"maximize\" or \"minimize\""
        )
    return higher


def reached(metric_name: str, value: float, target: float, higher: bool | None = None) -> bool:
    """Whether ``value`` of ``metric_name`` reaches ``target`` (see the module docstring).

    ``higher`` overrides the direction read from the name (a targets file that states
    its metric's goal).
    """
    if value is None or math.isnan(value):
        return False
    if higher is None:
        higher = higher_is_better(metric_name)
    return value >= target if higher else value <= target
