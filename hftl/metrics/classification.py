"""An ``evaluate`` metric module shipped with hftl, so metrics load offline.

``evaluate.load("accuracy")`` fetches its script from the Hub; ``evaluate.load(<this file>)`` does
not. One module computes what a classification run reports: accuracy, macro-F1, macro precision
and recall, per-class precision / recall / F1 and the confusion matrix (rows = true label,
columns = predicted label).
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Accuracy, macro F1 / precision / recall, per-class scores and the confusion matrix."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    num_labels (int, optional): number of classes (default: 1 + the largest id seen).
Returns:
    accuracy, f1, precision, recall (macro averages over classes; a class never predicted has
    precision 0, one never present has recall 0), per_class (dict of lists), confusion_matrix.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, num_labels=None):
        predictions, references = np.asarray(predictions), np.asarray(references)
        if num_labels is None:
            num_labels = int(max(predictions.max(initial=0), references.max(initial=0))) + 1
        confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
        np.add.at(confusion, (references, predictions), 1)
        true_positives = np.diag(confusion).astype(float)
        predicted = confusion.sum(axis=0)
        actual = confusion.sum(axis=1)
        precision = np.divide(
            true_positives, predicted, out=np.zeros(num_labels), where=predicted > 0
        )
        recall = np.divide(true_positives, actual, out=np.zeros(num_labels), where=actual > 0)
        denominator = precision + recall
        f1 = np.divide(
            2 * precision * recall, denominator, out=np.zeros(num_labels), where=denominator > 0
        )
        return {
            "accuracy": float(true_positives.sum() / max(confusion.sum(), 1)),
            "f1": float(f1.mean()),
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "per_class": {
                "precision": precision.tolist(),
                "recall": recall.tolist(),
                "f1": f1.tolist(),
                "support": actual.tolist(),
            },
            "confusion_matrix": confusion.tolist(),
        }
