"""ogbg's eval metrics: masked sigmoid cross-entropy, accuracy and mean average precision."""

from __future__ import annotations

import numpy as np


def sigmoid_bce(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-entry ``max(x, 0) - x y + log(1 + exp(-|x|))`` (stable binary cross-entropy)."""
    return np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))


def mean_average_precision(logits: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> float:
    """Mean over tasks of scikit-learn's average precision on the labelled entries.

    ``labels`` [G, T] (NaN already replaced by 0), ``mask`` [G, T] (1 = labelled, real
    graph). As in the reference, task t counts only if its label column (padding and
    missing entries included, as 0) holds both a 0 and a 1; AP is then
    ``sum_k (R_k - R_{k-1}) P_k`` over descending thresholds of sigmoid(logits) on the
    masked entries. NaN tasks are ignored; NaN if none counts.
    """
    from sklearn.metrics import average_precision_score  # lazy: only evals need it

    probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    aps = []
    for t in range(labels.shape[1]):
        column = labels[:, t]
        if np.sum(column == 0) > 0 and np.sum(column == 1) > 0:
            keep = mask[:, t] > 0
            aps.append(average_precision_score(column[keep], probs[keep, t]))
    return float(np.nanmean(aps)) if aps and not np.all(np.isnan(aps)) else float("nan")


def eval_metrics(logits: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """'loss' and 'accuracy' (masked means over labelled entries) and 'mean_average_precision'."""
    valid = mask > 0
    n = max(float(np.sum(valid)), 1.0)
    loss = float(np.sum(np.where(valid, sigmoid_bce(logits, labels), 0.0))) / n
    accuracy = float(np.sum(valid & ((logits > 0) == (labels > 0.5)))) / n
    return {
        "loss": loss,
        "accuracy": accuracy,
        "mean_average_precision": mean_average_precision(logits, labels, mask),
    }
