"""``multi_label``: each example has any number of labels (a sigmoid per label, binary
cross-entropy per label), with a decision threshold per label tuned on the validation split."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from datasets import ClassLabel, DatasetDict, Sequence, Value

from hftl.errors import ConfigError, shown
from hftl.metrics import multi_label_report
from hftl.shapes.base import (
    LabelShape,
    LabelSpec,
    by_name,
    effective_number,
    named_outputs,
    remap,
    set_class_weights,
    unknown_labels,
)
from hftl.shapes.single_label import inner_feature, is_list, sklearn_or_error

logger = logging.getLogger(__name__)

THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


def _indicator_columns(features, label_columns) -> bool:
    """Several integer / bool columns: one 0/1 column per label."""
    return len(label_columns) > 1 and all(
        isinstance(features[c], Value)
        and (features[c].dtype.startswith("int") or features[c].dtype == "bool")
        for c in label_columns
    )


class MultiLabel(LabelShape):
    name = "multi_label"
    problem_type = "multi_label_classification"
    summary = "any number of labels per example: a sigmoid per label, binary cross-entropy"
    metric_names = ("f1", "f1_macro", "f1_samples", "accuracy", "mean_average_precision")
    labels_title = "Labels (any number per example)"
    default_metric = "f1"

    def claims(self, features, label_columns, args) -> bool:
        if args.label_delimiter is not None:
            return True
        if _indicator_columns(features, label_columns):
            return True
        return len(label_columns) == 1 and is_list(features[label_columns[0]])

    def encode(self, dataset: DatasetDict, label_columns, args):
        features = dataset["train"].features
        column = label_columns[0]
        if len(label_columns) > 1:
            if not _indicator_columns(features, label_columns):
                raise ConfigError(
                    f"--label_column_name {','.join(label_columns)}: several label columns are "
                    "multi-label when each holds 0 / 1 (one column per label); these are not all "
                    "integer columns"
                )
            return _from_indicators(dataset, label_columns)
        if args.label_delimiter is not None:
            dataset = _split_delimited(dataset, column, args.label_delimiter)
        elif not is_list(features[column]):
            raise ConfigError(
                f"--problem_type multi_label_classification: the label column '{column}' holds "
                "one value per row; give a list-valued column, --label_delimiter for a text "
                "column like 'a,b', or one 0/1 column per label (--label_column_name a,b,c)"
            )
        return _multi_hot(dataset, column)

    def check_coverage(self, dataset, column, names, drop_unseen):
        positives = np.asarray(dataset["train"][column]).sum(axis=0)
        unseen = [i for i, n in enumerate(positives) if n == 0]
        if len(names) - len(unseen) < 1:
            raise ConfigError("the training data has no example with a label; nothing to learn")
        if not unseen:
            return dataset, names
        in_validation = np.asarray(dataset["validation"][column]).sum(axis=0)
        described = ", ".join(
            f"'{names[i]}' ({int(in_validation[i])} validation rows)" for i in unseen
        )
        if not drop_unseen:
            raise ConfigError(
                f"label {described} never occurs in the training data; add training examples of "
                "it, remove it, or pass --drop_unseen_validation_labels true to drop the label"
            )
        keep = [i for i in range(len(names)) if i not in unseen]
        logger.warning("dropping label %s: it never occurs in the training data", described)
        kept = [names[i] for i in keep]

        def select(batch):
            batch[column] = [[row[i] for i in keep] for row in batch[column]]
            return batch

        return remap(dataset, column, Sequence(Value("float32"), length=len(keep)), select), kept

    def spec(self, train, column, names, label_args) -> LabelSpec:
        positives = np.asarray(self.label_counts(train, column, names), dtype=np.float64)
        negatives = len(train) - positives
        spec = LabelSpec(shape=self, names=list(names), counts=positives.astype(int).tolist())
        positive = np.maximum(positives, 1)
        set_class_weights(
            spec, label_args.class_weights,
            inverse=lambda: (np.maximum(negatives / positive, 1e-6),
                             "pos_weight = negatives / positives per label"),
            effective=lambda beta: (
                np.maximum(effective_number(negatives, beta) / effective_number(positive, beta), 1e-6),
                f"pos_weight = effective number of negatives / of positives (beta {beta})",
            ),
            given="pos_weight given",
        )  # fmt: skip
        if label_args.label_thresholds != "tuned":
            spec.thresholds = [float(label_args.label_thresholds)] * len(names)
            spec.threshold_rule = f"fixed at {float(label_args.label_thresholds)}"
        return spec

    def label_counts(self, data, column, names):
        targets = np.asarray(data[column], dtype=np.float64).reshape(len(data), len(names))
        return (targets > 0.5).sum(axis=0).astype(int).tolist()

    def loss(self, spec, logits, labels, smoothing):
        targets = labels.float().view(logits.shape)
        if smoothing:
            targets = targets * (1 - smoothing) + smoothing / 2
        pos_weight = None
        if spec.class_weights is not None:
            pos_weight = torch.tensor(spec.class_weights, dtype=torch.float32, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits.float(), targets, pos_weight=pos_weight)

    def align(self, dataset, column, spec, known, model):
        named_outputs(known, model)
        unknown_labels(spec.names, known, model)
        position = [spec.names.index(n) if n in spec.names else None for n in known]

        def reorder(batch):
            batch[column] = [[row[p] if p is not None else 0.0 for p in position]
                             for row in batch[column]]  # fmt: skip
            return batch

        vectors = Sequence(Value("float32"), length=len(known))
        return remap(dataset, column, vectors, reorder), LabelSpec(shape=self, names=list(known))

    def distill(self, spec, student, teacher, temperature):
        # per label, KL(Bernoulli(sigmoid(teacher / T)) || Bernoulli(sigmoid(student / T))),
        # the mean over labels and examples: 0 where the student is the teacher
        t = temperature
        s, z = student / t, teacher / t
        p = torch.sigmoid(z)
        divergence = p * (F.logsigmoid(z) - F.logsigmoid(s)) + (1 - p) * (
            F.logsigmoid(-z) - F.logsigmoid(-s)
        )
        return t * t * divergence.mean()

    def nll(self, spec, logits, target):
        return F.binary_cross_entropy_with_logits(
            logits, target.float().view(logits.shape), reduction="sum"
        )

    def sample(self, spec, logits, generator):
        probabilities = torch.sigmoid(logits.detach()).cpu()
        return torch.bernoulli(probabilities, generator=generator).to(logits.device)

    def outputs(self, spec, logits):
        return 1.0 / (1.0 + np.exp(-logits))

    def decisions(self, spec, probabilities, thresholds=None):
        cut = np.asarray(thresholds if thresholds is not None else spec.thresholds or 0.5)
        return (probabilities >= cut).astype(np.int64)

    def predictions(self, spec, logits):
        probabilities = self.outputs(spec, logits)
        chosen = self.decisions(spec, probabilities)
        rows = []
        for row, picked in zip(probabilities, chosen, strict=True):
            labels = [n for n, on in zip(spec.names, picked, strict=True) if on]
            rows.append({
                "prediction": str(labels), "labels": labels,
                "scores": by_name(spec.names, row),
            })  # fmt: skip
        return rows

    def report(self, spec, logits, labels):
        probabilities = self.outputs(spec, logits)
        truth = (labels > 0.5).astype(np.int64)
        at_half = multi_label_report(
            self.decisions(spec, probabilities, 0.5), truth, probabilities, spec.names
        )
        if spec.thresholds is None:
            return {**at_half, "thresholds": None}
        tuned = multi_label_report(
            self.decisions(spec, probabilities), truth, probabilities, spec.names
        )
        tuned["at_0.5"] = {k: at_half[k] for k in self.metric_names}
        tuned["thresholds"] = dict(zip(spec.names, spec.thresholds, strict=True))
        tuned["threshold_rule"] = spec.threshold_rule
        return tuned

    def settle(self, spec, logits, labels):
        if spec.thresholds is None:  # tuned: each label's F1-maximising threshold
            spec.thresholds = tune_thresholds(self.outputs(spec, logits), labels > 0.5)
            spec.threshold_rule = "tuned per label on the validation split (maximum F1)"

    def fit_probe(self, spec, features, labels, seed):
        return fit_multi_label_probe(features, labels, seed=seed)

    def card_metrics(self, report):
        return [
            ("f1", "Micro F1", report["f1"]),
            ("f1_macro", "Macro F1", report["f1_macro"]),
            ("mean_average_precision", "Mean average precision", report["mean_average_precision"]),
            ("accuracy", "Subset accuracy", report["accuracy"]),
        ]

    def summary_line(self, report):
        line = (
            f"micro-F1 {report['f1']:.4f}, macro-F1 {report['f1_macro']:.4f}, mAP "
            f"{report['mean_average_precision']:.4f}"
        )
        if report.get("at_0.5"):
            line += f" (at 0.5: micro-F1 {report['at_0.5']['f1']:.4f})"
        return line


def tune_thresholds(probabilities: np.ndarray, truth: np.ndarray) -> list[float]:
    """Per label, the threshold on :data:`THRESHOLD_GRID` with the highest F1 on these examples
    (ties: the one nearest 0.5; a label without positives keeps 0.5)."""
    truth = np.asarray(truth, dtype=bool)
    chosen = []
    for j in range(truth.shape[1]):
        if not truth[:, j].any():
            chosen.append(0.5)
            continue
        best, best_f1 = 0.5, -1.0
        for t in sorted(THRESHOLD_GRID, key=lambda t: abs(t - 0.5)):
            predicted = probabilities[:, j] >= t
            tp = float((predicted & truth[:, j]).sum())
            f1 = 2 * tp / max(predicted.sum() + truth[:, j].sum(), 1)
            if f1 > best_f1 + 1e-12:
                best, best_f1 = float(t), f1
        chosen.append(best)
    return chosen


def _split_delimited(dataset: DatasetDict, column: str, delimiter: str) -> DatasetDict:
    for split, data in dataset.items():
        feature = data.features[column]
        if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string")):
            raise ConfigError(
                f"--label_delimiter {delimiter!r}: split '{split}' column '{column}' holds "
                f"{getattr(feature, 'dtype', type(feature).__name__)}, not text"
            )

    def split_cell(batch):  # an empty cell (None in a CSV) is a row without labels
        batch[column] = [
            [part.strip() for part in (value or "").split(delimiter) if part.strip()]
            for value in batch[column]
        ]
        return batch

    return remap(dataset, column, Sequence(Value("string")), split_cell)


def _multi_hot(dataset: DatasetDict, column: str) -> tuple[DatasetDict, list[str]]:
    """A list column (names, ids, or ClassLabel ids) as a multi-hot float vector."""
    item = inner_feature(dataset["train"].features[column])
    if isinstance(item, ClassLabel):
        names = list(item.names)

        def name_of(value):
            return names[value]
    else:
        for split, data in dataset.items():
            for index, value in enumerate(data[column]):
                if value is None:
                    raise ConfigError(
                        f"split '{split}': data row {index + 1} has no '{column}' (None); give "
                        "an empty list for a row without labels"
                    )
                bad = [v for v in value if v is None or str(v).strip() == ""]
                if bad:
                    raise ConfigError(
                        f"split '{split}': data row {index + 1} has an empty label in '{column}'"
                        f" ({shown(value)}); remove it"
                    )
        names = sorted({str(v) for data in dataset.values() for row in data[column] for v in row})

        def name_of(value):
            return str(value)

    if not names:
        raise ConfigError(f"label column '{column}': every row's list is empty; no labels to learn")
    index = {name: i for i, name in enumerate(names)}

    def encode(batch):
        rows = []
        for value in batch[column]:
            row = [0.0] * len(names)
            for v in value:
                row[index[name_of(v)]] = 1.0
            rows.append(row)
        batch[column] = rows
        return batch

    return remap(dataset, column, Sequence(Value("float32"), length=len(names)), encode), names


def _from_indicators(dataset: DatasetDict, columns: list[str]) -> tuple[DatasetDict, list[str]]:
    """One 0/1 column per label, as one multi-hot column (in the first one's place)."""
    for split, data in dataset.items():
        for column in columns:
            values = set(data.unique(column))
            if not values <= {0, 1}:
                raise ConfigError(
                    f"split '{split}': label column '{column}' holds {shown(sorted(values - {0, 1}))}; "
                    "a multi-label indicator column holds 0 or 1 (numeric targets: --problem_type "
                    "regression)"
                )

    def combine(batch):
        batch[columns[0]] = [
            [float(batch[c][i]) for c in columns] for i in range(len(batch[columns[0]]))
        ]
        return batch

    vectors = Sequence(Value("float32"), length=len(columns))
    return remap(dataset, columns[0], vectors, combine), list(columns)


def fit_multi_label_probe(features, labels, seed: int = 0) -> dict:
    """One standardised logistic regression per label (C by 5-fold CV on mean F1 of the labels),
    as one linear layer for raw features."""
    sklearn_or_error()
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels) > 0.5
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    folds = int(min(5, len(x)))
    if folds < 2:
        raise ValueError("linear_probe: needs at least 2 training examples")
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(z))

    def fit(c, rows):
        weight, bias = np.zeros((y.shape[1], z.shape[1])), np.zeros(y.shape[1])
        for j in range(y.shape[1]):
            target = y[rows, j]
            if target.all() or not target.any():  # one value in these rows: a constant
                bias[j] = 20.0 if target.all() else -20.0
                continue
            model = LogisticRegression(C=c, max_iter=2000).fit(z[rows], target)
            weight[j], bias[j] = model.coef_[0], model.intercept_[0]
        return weight, bias

    scores = {}
    for c in (0.01, 0.1, 1.0, 10.0):
        f1s = []
        for train_rows, test_rows in splits:
            weight, bias = fit(c, train_rows)
            predicted = z[test_rows] @ weight.T + bias > 0
            truth = y[test_rows]
            tp = (predicted & truth).sum()
            f1s.append(2 * tp / max(predicted.sum() + truth.sum(), 1))
        scores[c] = float(np.mean(f1s))
    best = max(scores, key=scores.get)
    weight, bias = fit(best, np.arange(len(z)))
    return {
        "weight": torch.tensor(weight / std, dtype=torch.float32),
        "bias": torch.tensor(bias - (weight / std) @ mean, dtype=torch.float32),
        "C": best,
        "cv_score": scores[best],
        "cv_metric": "micro-F1",
        "folds": folds,
    }
