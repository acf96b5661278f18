"""An ``evaluate`` metric module shipped with hftl for regression (loads offline): MSE, RMSE,
MAE, R², Pearson and Spearman, over every target and per target."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Regression: MSE, RMSE, MAE, R², Pearson and Spearman correlation."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of list of float): predicted values, one list per example (one entry per
        target).
    references (list of list of float): the true values, same shape.
Returns:
    mse, rmse, mae, r2, pearson, spearman: the mean over targets; per_target (dict of lists).
    R² is 1 - SSE / SST per target (0 for a constant prediction at the mean); a correlation of a
    constant is 0.
"""


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    ranked = np.empty(len(values), dtype=float)
    ranked[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranked)
    return (sums / counts)[inverse]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Regression(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("float64")),
                }
            ),
        )

    def _compute(self, predictions, references):
        predicted = np.asarray(predictions, dtype=float)
        truth = np.asarray(references, dtype=float)
        error = predicted - truth
        mse = (error**2).mean(axis=0)
        total = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
        r2 = np.where(total > 0, 1 - (error**2).sum(axis=0) / np.where(total > 0, total, 1), 0.0)
        per_target = {
            "mse": mse.tolist(),
            "rmse": np.sqrt(mse).tolist(),
            "mae": np.abs(error).mean(axis=0).tolist(),
            "r2": r2.tolist(),
            "pearson": [pearson(predicted[:, j], truth[:, j]) for j in range(truth.shape[1])],
            "spearman": [
                pearson(ranks(predicted[:, j]), ranks(truth[:, j])) for j in range(truth.shape[1])
            ],
        }
        result = {key: float(np.mean(values)) for key, values in per_target.items()}
        result["per_target"] = per_target
        return result
