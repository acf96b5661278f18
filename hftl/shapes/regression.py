"""``regression``: each example has one number, or several (one per target column).

The model trains on standardised targets, ``(y - mean) / std`` of the training data (unless
``--standardize_targets false``), with MSE or Huber; evaluations report in the data's units, and
before the model is saved the scale is written into its output layer, so the saved model (and
``pipeline()``, which applies no function to a regression model's output) predicts in the data's
own units. Checkpoints written during training hold the standardised head.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from datasets import DatasetDict, Sequence, Value
from torch import nn

from hftl.errors import ConfigError, shown
from hftl.metrics import regression_report
from hftl.shapes.base import LabelShape, LabelSpec, by_name, remap
from hftl.shapes.single_label import inner_feature, is_list, sklearn_or_error

logger = logging.getLogger(__name__)


def _numeric(feature) -> bool:
    return isinstance(feature, Value) and (
        feature.dtype.startswith(("float", "int", "uint")) or feature.dtype == "bool"
    )


class Regression(LabelShape):
    name = "regression"
    problem_type = "regression"
    summary = (
        "a number per example (or one per target column): MSE or Huber on standardised targets"
    )
    metric_names = ("rmse", "mae", "r2", "pearson", "spearman", "mse")
    labels_title = "Targets"
    default_metric = "rmse"
    lower_is_better = frozenset({"rmse", "mae", "mse"})
    takes_class_weights = False
    takes_label_smoothing = False

    def claims(self, features, label_columns, args) -> bool:
        # as run_classification.py decides: a float label column is regression
        return all(
            isinstance(features[c], Value) and features[c].dtype.startswith("float")
            for c in label_columns
        )

    def encode(self, dataset: DatasetDict, label_columns, args):
        if args.label_delimiter is not None:
            raise ConfigError(
                f"--label_delimiter {args.label_delimiter!r} splits labels; a regression target is "
                "a number: drop --label_delimiter"
            )
        features = dataset["train"].features
        column = label_columns[0]
        if len(label_columns) == 1 and is_list(features[column]):
            names = None  # a list of numbers per row: one target per position
            if not _numeric(inner_feature(features[column])):
                raise ConfigError(
                    f"--problem_type regression: label column '{column}' holds lists of "
                    f"{getattr(inner_feature(features[column]), 'dtype', 'values')}, not numbers"
                )
        else:
            for c in label_columns:
                if not _numeric(features[c]):
                    kind = getattr(features[c], "dtype", type(features[c]).__name__)
                    raise ConfigError(
                        f"--problem_type regression: label column '{c}' holds {kind}, not numbers; "
                        "name the target column with --label_column_name"
                    )
            names = list(label_columns)
        width = None
        for split, data in dataset.items():
            rows = [data[c] for c in label_columns]
            for index in range(len(data)):
                values = rows[0][index] if names is None else [r[index] for r in rows]
                if values is None or any(v is None for v in values):
                    raise ConfigError(
                        f"split '{split}': data row {index + 1} has no '{column}' target; fill or "
                        "drop it"
                    )
                bad = [v for v in values if not math.isfinite(float(v))]
                if bad:
                    raise ConfigError(
                        f"split '{split}': data row {index + 1} has a target {shown(bad)} (not a "
                        "finite number); fix or drop the row"
                    )
                if width is None:
                    width = len(values)
                elif len(values) != width:
                    raise ConfigError(
                        f"split '{split}': data row {index + 1} has {len(values)} targets in "
                        f"'{column}', other rows {width}; every row needs the same number"
                    )
        if names is None:
            names = [f"{column}_{i}" for i in range(width)] if width > 1 else [column]

        def combine(batch):
            if len(label_columns) == 1 and is_list(features[column]):
                batch[column] = [[float(v) for v in row] for row in batch[column]]
            else:
                batch[column] = [
                    [float(batch[c][i]) for c in label_columns] for i in range(len(batch[column]))
                ]
            return batch

        return remap(dataset, column, Sequence(Value("float32"), length=len(names)), combine), names

    def spec(self, train, column, names, label_args) -> LabelSpec:
        if label_args.class_weights:
            raise ConfigError(
                f"--class_weights {label_args.class_weights}: a regression run has no classes to "
                "weigh; drop it"
            )
        targets = np.asarray(train[column], dtype=np.float64)
        if label_args.standardize_targets:
            mean = targets.mean(axis=0)
            std = targets.std(axis=0)
            if (std == 0).any():
                constant = [n for n, s in zip(names, std, strict=True) if s == 0]
                raise ConfigError(
                    f"regression target {', '.join(constant)} has one value in all "
                    f"{len(targets)} training rows; nothing to learn"
                )
        else:
            mean, std = np.zeros(len(names)), np.ones(len(names))
        return LabelSpec(
            shape=self, names=list(names), mean=[float(m) for m in mean],
            std=[float(s) for s in std], regression_loss=label_args.regression_loss,
            huber_delta=label_args.huber_delta,
        )  # fmt: skip

    def _scale(self, spec, like: torch.Tensor):
        mean = torch.tensor(spec.mean or [0.0] * spec.num_outputs, dtype=torch.float32)
        std = torch.tensor(spec.std or [1.0] * spec.num_outputs, dtype=torch.float32)
        return mean.to(like.device), std.to(like.device)

    def _standardised(self, spec, logits, labels=None):
        """(the outputs, the targets) in standardised units, whichever units the model has."""
        mean, std = self._scale(spec, logits)
        outputs = (logits.float() - mean) / std if spec.scale_in_model else logits.float()
        if labels is None:
            return outputs, None
        return outputs, (labels.float().view(logits.shape) - mean) / std

    def loss(self, spec, logits, labels, smoothing):
        outputs, target = self._standardised(spec, logits, labels)
        if spec.regression_loss == "huber":
            return F.huber_loss(outputs, target, delta=spec.huber_delta)
        return F.mse_loss(outputs, target)

    def align(self, dataset, column, spec, known, model):
        if len(known) != spec.num_outputs:
            raise ConfigError(
                f"{spec.num_outputs} targets ({', '.join(spec.names)}), but the reference model "
                f"{model} predicts {len(known)} ({', '.join(known)}); give its own targets"
            )
        # a saved model predicts in the data's units (hftl writes the scale into it)
        return dataset, LabelSpec(shape=self, names=list(known), mean=spec.mean, std=spec.std,
                                  scale_in_model=True)  # fmt: skip

    def distill(self, spec, student, teacher, temperature):
        # the outputs themselves, in standardised units (no temperature for numbers)
        return F.mse_loss(
            self._standardised(spec, student)[0], self._standardised(spec, teacher)[0]
        )

    def nll(self, spec, logits, target):
        # a Gaussian with the targets' spread: 0.5 * ((y_hat - y) / std)^2, standardised units
        outputs, standardised = self._standardised(spec, logits, target)
        return 0.5 * ((outputs - standardised) ** 2).sum()

    def sample(self, spec, logits, generator):
        mean, std = self._scale(spec, logits)
        outputs = self._standardised(spec, logits)[0].detach()
        noise = torch.randn(outputs.shape, generator=generator).to(outputs.device)
        return (outputs + noise) * std + mean  # in the data's units, as labels are

    def outputs(self, spec, logits):
        """The model's outputs in the data's units (the model in training is standardised)."""
        values = logits.reshape(len(logits), -1)
        if spec.scale_in_model:
            return values
        return values * np.asarray(spec.std or 1.0) + np.asarray(spec.mean or 0.0)

    def predictions(self, spec, logits):
        rows = []
        for row in self.outputs(spec, logits):
            values = by_name(spec.names, row)
            text = ",".join(f"{v:3.3f}" for v in row)  # as run_glue.py writes a score
            rows.append({"prediction": text, "value": values[spec.names[0]]} if len(row) == 1
                        else {"prediction": text, "values": values})  # fmt: skip
        return rows

    def report(self, spec, logits, labels):
        predicted = self.outputs(spec, logits)
        truth = labels.reshape(len(labels), -1)
        result = regression_report(predicted, truth, spec.names)
        shown_rows = slice(0, 2000)  # the card's predicted-vs-true plot (first target)
        result["predicted_vs_true"] = {
            "target": spec.names[0],
            "true": [round(float(v), 6) for v in truth[shown_rows, 0]],
            "predicted": [round(float(v), 6) for v in predicted[shown_rows, 0]],
        }
        return result

    def probe_targets(self, spec, labels):
        mean = np.asarray(spec.mean or 0.0)
        std = np.asarray(spec.std or 1.0)
        return (np.asarray(labels, dtype=np.float64).reshape(len(labels), -1) - mean) / std

    def fit_probe(self, spec, features, labels, seed):
        return fit_ridge_probe(features, self.probe_targets(spec, labels), seed=seed)

    def finish_model(self, spec, model):
        if spec.mean is not None and not spec.scale_in_model:
            fold_scale(model, spec.num_outputs, spec.mean, spec.std)
            spec.scale_in_model = True

    def card_metrics(self, report):
        return [
            ("rmse", "RMSE", report["rmse"]),
            ("mae", "MAE", report["mae"]),
            ("r2", "R²", report["r2"]),
            ("pearsonr", "Pearson r", report["pearson"]),
            ("spearmanr", "Spearman ρ", report["spearman"]),
        ]

    def summary_line(self, report):
        return (
            f"RMSE {report['rmse']:.4f}, MAE {report['mae']:.4f}, R² {report['r2']:.4f}, "
            f"Pearson {report['pearson']:.4f}"
        )


def output_layers(model: nn.Module, num_outputs: int) -> list[nn.Linear]:
    """The linear layer(s) that give the model's outputs: the last ``nn.Linear`` with
    ``num_outputs`` outputs (with PEFT, also the trained copy of it that PEFT keeps)."""
    found = [
        m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_outputs
    ]
    if not found:
        raise ConfigError(
            f"regression: the model has no linear layer with {num_outputs} outputs to write the "
            "targets' scale into; train with --standardize_targets false"
        )
    last = found[-1]
    names = {id(m): n for n, m in model.named_modules()}
    stem = names[id(last)].rsplit(".", 2)[0]
    # PEFT's modules_to_save keeps the original and a trained copy side by side
    return (
        [m for m in found if names[id(m)].startswith(stem)]
        if "modules_to_save" in names[id(last)]
        else [last]
    )


def fold_scale(model: nn.Module, num_outputs: int, mean, std) -> None:
    """Make the output layer predict ``std * y + mean``, in place."""
    scale = torch.tensor(std, dtype=torch.float64)
    shift = torch.tensor(mean, dtype=torch.float64)
    with torch.no_grad():
        for layer in output_layers(model, num_outputs):
            weight = layer.weight.double() * scale[:, None]
            layer.weight.copy_(weight.to(layer.weight.dtype))
            if layer.bias is None:
                raise ConfigError(
                    "regression: the output layer has no bias to hold the targets' mean"
                )
            layer.bias.copy_((layer.bias.double() * scale + shift).to(layer.bias.dtype))


def fit_ridge_probe(features, targets, seed: int = 0) -> dict:
    """Ridge regression on standardised features (alpha by 5-fold CV on the mean squared error,
    defined however small a fold), as one linear layer."""
    sklearn_or_error()
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, KFold

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    folds = int(min(5, len(x)))
    if folds < 2:
        raise ValueError("linear_probe: needs at least 2 training examples")
    search = GridSearchCV(
        Ridge(),
        {"alpha": [0.1, 1.0, 10.0, 100.0, 1000.0]},
        cv=KFold(folds, shuffle=True, random_state=seed),
        scoring="neg_mean_squared_error",
    )
    search.fit((x - mean) / std, y)
    coef = np.atleast_2d(search.best_estimator_.coef_)
    intercept = np.atleast_1d(search.best_estimator_.intercept_)
    return {
        "weight": torch.tensor(coef / std, dtype=torch.float32),
        "bias": torch.tensor(intercept - (coef / std) @ mean, dtype=torch.float32),
        "C": float(search.best_params_["alpha"]),  # the strength: ridge's alpha
        "parameter": "alpha",
        "cv_score": -float(search.best_score_),
        "cv_metric": "MSE (standardised targets)",
        "folds": folds,
    }
