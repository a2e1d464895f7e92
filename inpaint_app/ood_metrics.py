"""Detection metrics for anomaly scores: AUROC, AUPR and FPR at a fixed TPR.

Convention everywhere: the out-of-distribution images are the positives and a higher score means
more anomalous. Ties count half in AUROC (the Mann-Whitney statistic with midranks) and are never
split by a threshold in AUPR or FPR@TPR, so no metric depends on the order of equal scores.
"""

from __future__ import annotations

import math

import numpy as np


def _as_arrays(inliers: np.ndarray, outliers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inliers = np.asarray(inliers, dtype=np.float64).ravel()
    outliers = np.asarray(outliers, dtype=np.float64).ravel()
    if inliers.size == 0 or outliers.size == 0:
        raise ValueError("need at least one in-distribution and one out-of-distribution score")
    if np.isnan(inliers).any() or np.isnan(outliers).any():
        raise ValueError("scores must not be NaN (+inf is allowed: maximally anomalous)")
    return inliers, outliers


def auroc(inliers: np.ndarray, outliers: np.ndarray) -> float:
    """P(out > in) + P(out = in) / 2, from midranks of the pooled scores."""
    inliers, outliers = _as_arrays(inliers, outliers)
    pooled = np.concatenate([inliers, outliers])
    order = np.argsort(pooled, kind="mergesort")
    ranks = np.empty(pooled.size)
    sorted_scores = pooled[order]
    # Midranks: every member of a tie group gets the mean of the group's 1-based ranks.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], pooled.size]
    mid = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(mid, ends - starts)
    n_in, n_out = inliers.size, outliers.size
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2.0
    return float(u / (n_in * n_out))


def _curve(inliers: np.ndarray, outliers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct threshold, highest first."""
    scores = np.concatenate([outliers, inliers])
    labels = np.r_[np.ones(outliers.size), np.zeros(inliers.size)]
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_group = np.r_[scores[1:] != scores[:-1], True]
    tp = np.cumsum(labels)[last_of_group]
    fp = np.cumsum(1.0 - labels)[last_of_group]
    return tp, fp


def aupr(inliers: np.ndarray, outliers: np.ndarray) -> float:
    """Average precision with the outliers as positives: sum over thresholds of dRecall x
    precision (the step-wise area, without the optimistic linear interpolation)."""
    inliers, outliers = _as_arrays(inliers, outliers)
    tp, fp = _curve(inliers, outliers)
    recall = tp / outliers.size
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_tpr(inliers: np.ndarray, outliers: np.ndarray, tpr: float = 0.95) -> float:
    """Fraction of inliers flagged by the highest threshold that flags at least ``tpr`` of the
    outliers (flag = score >= threshold, so a tie at the threshold is flagged on both sides)."""
    inliers, outliers = _as_arrays(inliers, outliers)
    k = math.ceil(tpr * outliers.size - 1e-9)
    threshold = np.sort(outliers)[::-1][max(k, 1) - 1]
    return float(np.mean(inliers >= threshold))


def summary(inliers: np.ndarray, outliers: np.ndarray) -> dict[str, float]:
    """The three figures the OOD table reports."""
    return {"auroc": auroc(inliers, outliers), "aupr": aupr(inliers, outliers),
            "fpr95": fpr_at_tpr(inliers, outliers, 0.95)}
