"""Mean average precision over tasks, as ogbg reports it (our numpy implementation)."""

from __future__ import annotations

import numpy as np


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """AP of one task: ``sum_k (R_k - R_{k-1}) P_k`` over descending score thresholds.

    ``P_k`` and ``R_k`` are precision and recall when predicting positive every example
    scoring at least the k-th distinct score (ties enter together), ``R_0 = 0``. This is
    scikit-learn's ``average_precision_score`` (no interpolation). NaN without positives.
    """
    labels = np.asarray(labels, np.float64).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    order = np.argsort(-scores, kind="mergesort")
    labels, scores = labels[order], scores[order]
    true_pos = np.cumsum(labels)
    false_pos = np.cumsum(1.0 - labels)
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    true_pos, false_pos = true_pos[last_of_tie], false_pos[last_of_tie]
    if true_pos.size == 0 or true_pos[-1] == 0:
        return float("nan")
    precision = true_pos / (true_pos + false_pos)
    recall = true_pos / true_pos[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(labels: np.ndarray, scores: np.ndarray, mask: np.ndarray) -> float:
    """Mean over tasks (columns) of AP on the entries where ``mask`` is set.

    A task enters the mean only if its masked labels hold at least one positive and one
    negative; NaN if no task does.
    """
    aps = []
    for task in range(labels.shape[1]):
        keep = mask[:, task] > 0
        y = labels[keep, task]
        if y.size and 0 < y.sum() < y.size:
            aps.append(average_precision(y, scores[keep, task]))
    return float(np.mean(aps)) if aps else float("nan")
