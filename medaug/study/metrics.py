"""Binary classification metrics with a named positive class (thesis §1.5.4: sensitivity,
specificity, balanced accuracy; also accuracy, F1 and AUC)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _auc(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """Mann-Whitney AUC = P(score⁺ > score⁻) + ½ P(tie), from average ranks."""
    if len(positive_scores) == 0 or len(negative_scores) == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([positive_scores, negative_scores]))
    n_pos, n_neg = len(positive_scores), len(negative_scores)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(truth, predicted, score=None, positive="AD") -> dict[str, float]:
    """Sensitivity, specificity, balanced accuracy, accuracy, F1 (positive class) and AUC (from
    ``score``, the positive-class probability); ``truth`` and ``predicted`` are label sequences."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    is_positive, said_positive = truth == positive, predicted == positive
    tp = int(np.sum(is_positive & said_positive))
    tn = int(np.sum(~is_positive & ~said_positive))
    fp = int(np.sum(~is_positive & said_positive))
    fn = int(np.sum(is_positive & ~said_positive))
    sensitivity = tp / (tp + fn) if tp + fn else float("nan")
    specificity = tn / (tn + fp) if tn + fp else float("nan")
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * sensitivity / (precision + sensitivity) if precision + sensitivity else 0.0
    result = {"sensitivity": sensitivity, "specificity": specificity,
              "balanced_accuracy": 0.5 * (sensitivity + specificity), "accuracy": (tp + tn) / len(truth),
              "f1": f1, "tp": tp, "tn": tn, "fp": fp, "fn": fn}
    if score is not None:
        score = np.asarray(score, dtype=float)
        result["auc"] = _auc(score[is_positive], score[~is_positive])
    return result
