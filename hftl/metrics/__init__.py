"""Offline metrics through ``evaluate``: the metric modules live in this package."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSIFICATION_MODULE = str(Path(__file__).with_name("classification.py"))
MULTI_LABEL_MODULE = str(Path(__file__).with_name("multi_label.py"))
REGRESSION_MODULE = str(Path(__file__).with_name("regression.py"))
_LOADED: dict = {}


def _load(path: str):
    """The ``evaluate`` module in ``path`` (no network), loaded once per process."""
    import evaluate

    if path not in _LOADED:
        _LOADED[path] = evaluate.load(path)
    return _LOADED[path]


def load_classification_metric():
    """The ``evaluate`` module in ``classification.py`` (no network)."""
    return _load(CLASSIFICATION_MODULE)


def _by_name(result: dict, key: str, names: list[str], names_key: str) -> dict:
    """``result[key]`` (a dict of per-output lists) as {name: {metric: value}}, and the names."""
    columns = result.pop(key)
    result[key] = {
        name: {metric: values[i] for metric, values in columns.items()}
        for i, name in enumerate(names)
    }
    result[names_key] = list(names)
    return result


def multi_label_report(predictions, references, scores, labels: list[str]) -> dict:
    """Multi-label metrics (``multi_label.py``), with per-label scores keyed by label name."""
    result = _load(MULTI_LABEL_MODULE).compute(
        predictions=predictions, references=references, scores=scores
    )
    return _by_name(result, "per_label", labels, "labels")


def regression_report(predictions, references, targets: list[str]) -> dict:
    """Regression metrics (``regression.py``), with per-target scores keyed by target name."""
    result = _load(REGRESSION_MODULE).compute(predictions=predictions, references=references)
    return _by_name(result, "per_target", targets, "targets")


def classification_report(predictions, references, labels: list[str]) -> dict:
    """Everything the metric computes, with per-class scores keyed by label name."""
    result = load_classification_metric().compute(
        predictions=predictions, references=references, num_labels=len(labels)
    )
    return _by_name(result, "per_class", labels, "labels")


def compute_metrics_fn(labels: list[str]):
    """A ``Trainer(compute_metrics=...)`` function: scalar metrics only (accuracy, f1, precision, recall)."""
    metric = load_classification_metric()

    def compute_metrics(eval_prediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        result = metric.compute(
            predictions=np.argmax(logits, axis=-1),
            references=eval_prediction.label_ids,
            num_labels=len(labels),
        )
        return {key: result[key] for key in ("accuracy", "f1", "precision", "recall")}

    return compute_metrics
