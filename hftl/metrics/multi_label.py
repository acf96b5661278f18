"""An ``evaluate`` metric module shipped with hftl for multi-label classification (loads offline).

Predictions are 0/1 decisions per label, references the 0/1 truth, ``scores`` (optional) the
per-label probabilities that mean average precision ranks by.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = (
    "Multi-label: micro / macro / samples F1, subset accuracy, mean average precision and "
    "per-label precision / recall / F1 / support."
)
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of list of int): 0/1 decisions, one list per example, one entry per label.
    references (list of list of int): the 0/1 truth, same shape.
    scores (list of list of float, optional): per-label scores (probabilities) for mean average
        precision; without them it is computed from the decisions.
Returns:
    rows (examples), accuracy (subset accuracy: every label right), f1 (micro), f1_macro, f1_samples,
    precision / recall (micro), precision_macro / recall_macro, mean_average_precision (over the
    labels with a positive example), per_label (dict of lists: precision, recall, f1, support,
    average_precision).
"""


def _divide(numerator, denominator):
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Average precision of one label: the mean, over its positives, of the precision among the
    examples ranked at or above that positive (ties ranked pessimistically)."""
    positives = truth.sum()
    if positives == 0:
        return float("nan")
    # descending score; among equal scores the negatives first (pessimistic, deterministic)
    order = np.lexsort((truth, -scores))
    hits = truth[order]
    cumulative = np.cumsum(hits)
    ranks = np.arange(1, len(hits) + 1)
    return float((cumulative[hits == 1] / ranks[hits == 1]).sum() / positives)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultiLabel(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions, references, scores=None):
        predicted = np.asarray(predictions, dtype=np.int64)
        truth = np.asarray(references, dtype=np.int64)
        true_positives = (predicted & truth).sum(axis=0)
        predicted_count = predicted.sum(axis=0)
        support = truth.sum(axis=0)
        precision = _divide(true_positives, predicted_count)
        recall = _divide(true_positives, support)
        f1 = _divide(2 * precision * recall, precision + recall)
        micro_precision = float(_divide(true_positives.sum(), predicted_count.sum()))
        micro_recall = float(_divide(true_positives.sum(), support.sum()))
        micro_f1 = float(
            _divide(2 * micro_precision * micro_recall, micro_precision + micro_recall)
        )
        row_tp = (predicted & truth).sum(axis=1)
        row_f1 = _divide(2 * row_tp, predicted.sum(axis=1) + truth.sum(axis=1))
        # a row with no label and no predicted label is entirely right
        row_f1[(predicted.sum(axis=1) + truth.sum(axis=1)) == 0] = 1.0
        ranking = np.asarray(scores, dtype=float) if scores is not None else predicted
        ap = np.array(
            [average_precision(ranking[:, j], truth[:, j]) for j in range(truth.shape[1])]
        )
        return {
            "rows": int(len(truth)),
            "accuracy": float((predicted == truth).all(axis=1).mean()),
            "f1": micro_f1,
            "f1_macro": float(f1.mean()),
            "f1_samples": float(row_f1.mean()),
            "precision": micro_precision,
            "recall": micro_recall,
            "precision_macro": float(precision.mean()),
            "recall_macro": float(recall.mean()),
            "mean_average_precision": float(np.nanmean(ap)) if np.isfinite(ap).any() else 0.0,
            "per_label": {
                "precision": precision.tolist(),
                "recall": recall.tolist(),
                "f1": f1.tolist(),
                "support": support.tolist(),
                "average_precision": [None if np.isnan(v) else float(v) for v in ap],
            },
        }
