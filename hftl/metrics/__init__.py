"""Offline metrics through ``evaluate``: the metric modules live in this package."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSIFICATION_MODULE = str(Path(__file__).with_name("classification.py"))


def load_classification_metric():
    """The ``evaluate`` module in ``classification.py`` (no network)."""
    import evaluate

    return evaluate.load(CLASSIFICATION_MODULE)


def classification_report(predictions, references, labels: list[str]) -> dict:
    """Everything the metric computes, with per-class scores keyed by label name."""
    result = load_classification_metric().compute(
        predictions=predictions, references=references, num_labels=len(labels)
    )
    per_class = result.pop("per_class")
    result["per_class"] = {
        label: {key: values[i] for key, values in per_class.items()}
        for i, label in enumerate(labels)
    }
    result["labels"] = list(labels)
    return result


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
