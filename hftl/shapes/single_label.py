"""``single_label``: each example has exactly one class (softmax, cross-entropy)."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from datasets import ClassLabel, DatasetDict, Sequence, Value

from hftl.errors import ConfigError, shown
from hftl.metrics import classification_report
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

logger = logging.getLogger(__name__)


def is_list(feature) -> bool:
    """A list-valued column (``Sequence`` / ``List`` of anything)."""
    return isinstance(feature, (Sequence, list)) or type(feature).__name__ in ("List", "LargeList")


def inner_feature(feature):
    """The feature of a list column's items."""
    if isinstance(feature, list):
        return feature[0]
    return feature.feature


class SingleLabel(LabelShape):
    name = "single_label"
    problem_type = "single_label_classification"
    summary = "one class per example: softmax over the classes, cross-entropy"
    metric_names = ("accuracy", "f1", "precision", "recall")
    default_metric = "accuracy"
    stratified = True

    def claims(self, features, label_columns, args) -> bool:
        return True  # what is neither multi-label nor regression

    def encode(self, dataset: DatasetDict, label_columns, args):
        if len(label_columns) > 1:
            raise ConfigError(
                f"--label_column_name {','.join(label_columns)}: several label columns make a "
                "multi-label or regression problem; a single-label run reads one column"
            )
        column = label_columns[0]
        if args.label_delimiter is not None:
            raise ConfigError(
                f"--label_delimiter {args.label_delimiter!r} splits several labels per row, but "
                "--problem_type single_label_classification says each row has one; drop one of them"
            )
        if is_list(dataset["train"].features[column]):
            dataset = _one_per_row(dataset, column)
        return encode_classes(dataset, column)

    def check_coverage(self, dataset, column, names, drop_unseen):
        return check_class_coverage(dataset, column, names, drop_unseen)

    def spec(self, train, column, names, label_args) -> LabelSpec:
        counts = np.asarray(self.label_counts(train, column, names))
        spec = LabelSpec(shape=self, names=list(names), counts=counts.tolist())

        def scaled(weights):  # so that the weights average 1 over the training examples
            return weights * counts.sum() / (weights * counts).sum()

        set_class_weights(
            spec, label_args.class_weights,
            inverse=lambda: (scaled(1.0 / counts), "inverse frequency"),
            effective=lambda beta: (scaled(1.0 / effective_number(counts, beta)),
                                    f"effective number of samples (beta {beta})"),
        )  # fmt: skip
        return spec

    def label_counts(self, data, column, names):
        ids = np.asarray(data[column], dtype=np.int64)
        return np.bincount(ids, minlength=len(names)).tolist()

    def loss(self, spec, logits, labels, smoothing):
        weight = None
        if spec.class_weights is not None:
            weight = torch.tensor(spec.class_weights, dtype=torch.float32, device=logits.device)
        return F.cross_entropy(
            logits.float().view(-1, logits.shape[-1]), labels.view(-1).long(),
            weight=weight, label_smoothing=smoothing,
        )  # fmt: skip

    def align(self, dataset, column, spec, known, model):
        named_outputs(known, model)
        unknown_labels(spec.names, known, model)
        dataset = dataset.align_labels_with_mapping({n: i for i, n in enumerate(known)}, column)
        return dataset, LabelSpec(shape=self, names=list(known))

    def distill(self, spec, student, teacher, temperature):
        t = temperature
        divergence = F.kl_div(
            F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1),
            reduction="batchmean", log_target=True,
        )  # fmt: skip
        return t * t * divergence

    def nll(self, spec, logits, target):
        log_probs = torch.log_softmax(logits, dim=-1)
        return -log_probs.gather(-1, target.view(-1).long()[:, None]).sum()

    def sample(self, spec, logits, generator):
        probabilities = torch.softmax(logits.detach(), dim=-1).cpu()
        return torch.multinomial(probabilities, 1, generator=generator).view(-1).to(logits.device)

    def outputs(self, spec, logits):
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)

    def predictions(self, spec, logits):
        probabilities = self.outputs(spec, logits)
        rows = []
        for row in probabilities:
            best = int(row.argmax())
            rows.append({
                "prediction": spec.names[best], "label": spec.names[best],
                "score": round(float(row[best]), 6),
                "scores": by_name(spec.names, row),
            })  # fmt: skip
        return rows

    def report(self, spec, logits, labels):
        return classification_report(logits.argmax(-1), labels.reshape(-1), spec.names)

    def fit_probe(self, spec, features, labels, seed):
        return fit_linear_probe(features, labels, spec.num_outputs, seed=seed)

    def card_metrics(self, report):
        return [("accuracy", "Accuracy", report["accuracy"]), ("f1", "Macro F1", report["f1"])]

    def summary_line(self, report):
        return f"accuracy {report['accuracy']:.4f}, macro-F1 {report['f1']:.4f}"


def _one_per_row(dataset: DatasetDict, column: str) -> DatasetDict:
    """A list column read as one class per row: each list must hold exactly one."""
    for split, data in dataset.items():
        for index, value in enumerate(data[column]):
            if value is None or len(value) != 1:
                count = 0 if value is None else len(value)
                raise ConfigError(
                    f"split '{split}': data row {index + 1} has {count} labels in '{column}', but "
                    "--problem_type single_label_classification says each row has one; use "
                    "multi_label_classification, or fix the row"
                )
    item = inner_feature(dataset["train"].features[column])

    def first(batch):
        batch[column] = [value[0] for value in batch[column]]
        return batch

    return remap(dataset, column, item, first)


def encode_classes(dataset: DatasetDict, column: str) -> tuple[DatasetDict, list[str]]:
    """Make the label column a ClassLabel (names from the data) and return the label names."""
    feature = dataset["train"].features[column]
    for split, data in dataset.items():
        missing = [i for i, value in enumerate(data[column]) if value is None or value == ""]
        # datasets' ClassLabel -1 means no label (e.g. the hidden labels of a GLUE test split)
        if isinstance(data.features[column], ClassLabel) and -1 in data[column]:
            raise ConfigError(
                f"split '{split}': rows with '{column}' -1, i.e. no label (a test split "
                "whose labels the dataset hides?); evaluate on a labelled split "
                "(--eval_split_name) or drop those rows"
            )
        if missing:
            raise ConfigError(
                f"split '{split}': {len(missing)} rows have no '{column}' (first: data row "
                f"{missing[0] + 1}); fill or drop them"
            )
    if isinstance(feature, ClassLabel):
        # class folders: each split's folder builder names only the classes it found
        names = [set(d.features[column].names) for d in dataset.values()]
        if any(n != names[0] for n in names):
            dataset = _classes_as_names(dataset, column)
            feature = dataset["train"].features[column]
    if not isinstance(feature, ClassLabel) and feature.dtype.startswith("float"):
        values = {v for data in dataset.values() for v in data[column]}
        fractional = sorted(v for v in values if float(v) != int(v))
        if fractional:
            raise ConfigError(
                f"label column '{column}' holds real numbers ({shown(fractional)}) but "
                "--problem_type single_label_classification says classes: use --problem_type "
                "regression, or name the class column with --label_column_name"
            )
        dataset = dataset.cast_column(column, Value("int64"))
        feature = dataset["train"].features[column]
    if not isinstance(feature, ClassLabel):
        names = sorted({str(v) for data in dataset.values() for v in data[column]})
        dataset = (
            dataset.cast_column(column, Value("string")) if feature.dtype != "string" else dataset
        )
        dataset = dataset.cast_column(column, ClassLabel(names=names))
        feature = dataset["train"].features[column]
    return dataset, list(feature.names)


def _classes_as_names(dataset: DatasetDict, column: str) -> DatasetDict:
    """Splits whose ClassLabels name different classes, as one ClassLabel over all of them."""
    names = sorted({n for d in dataset.values() for n in d.features[column].names})
    out = DatasetDict()
    for split, data in dataset.items():
        own = data.features[column].names
        features = data.features.copy()
        features[column] = ClassLabel(names=names)
        out[split] = data.map(
            lambda batch, own=own: {column: [names.index(own[v]) for v in batch[column]]},
            batched=True,
            features=features,
        )
    return out


def check_class_coverage(
    dataset: DatasetDict, column: str, names: list[str], drop_unseen: bool = False
) -> tuple[DatasetDict, list[str]]:
    """Every class needs training examples, and there must be two classes at least.

    A class with no training example (a validation class the training data never has, or a
    label name no training row uses) is an error naming it; with ``drop_unseen`` its validation
    rows are dropped, with a warning, and it leaves the label set.

    Returns:
        The datasets (labels renumbered if a class left) and the label names.
    """
    names = list(dataset["train"].features[column].names)
    trained = Counter(dataset["train"][column])
    if len(trained) < 2:
        only = names[next(iter(trained))] if trained else "none"
        others = [n for i, n in enumerate(names) if i not in trained]
        elsewhere = f" (the other splits also have {shown(others)})" if others else ""
        raise ConfigError(
            f"the training data has one class ({only!r}){elsewhere}; a classifier needs "
            "training examples of two classes at least"
        )
    untrained = [i for i in range(len(names)) if i not in trained]
    if not untrained:
        return dataset, names
    in_validation = Counter(dataset["validation"][column])
    described = ", ".join(
        f"'{names[i]}' ({in_validation.get(i, 0)} validation rows)" for i in untrained
    )
    if not drop_unseen:
        raise ConfigError(
            f"class {described} never occurs in the training data; add training examples of it, "
            "remove it, or pass --drop_unseen_validation_labels true to drop those rows"
        )
    renumber = {old: new for new, old in enumerate(sorted(trained))}
    kept = [names[i] for i in sorted(trained)]
    logger.warning("dropping class %s: it never occurs in the training data", described)

    def relabel(batch):
        batch[column] = [renumber[v] for v in batch[column]]
        return batch

    out = DatasetDict()
    for split, data in dataset.items():
        data = data.filter(lambda row: row[column] in renumber)
        features = data.features.copy()
        features[column] = ClassLabel(names=kept)
        out[split] = data.map(relabel, batched=True, features=features)
    return out, kept


PROBE_CS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


def sklearn_or_error():
    try:
        import sklearn  # noqa: F401
    except ImportError as error:  # pragma: no cover - exercised only without scikit-learn
        raise ImportError(
            "linear_probe needs scikit-learn: pip install scikit-learn (or hftl[probe])"
        ) from error


def fit_linear_probe(features, labels, num_labels: int, seed: int = 0) -> dict:
    """Standardised multinomial logistic regression, C picked by stratified k-fold CV.

    Returns ``weight`` [num_labels, D] and ``bias`` [num_labels] for raw (unstandardised)
    features, so the probe is exactly one ``nn.Linear``, plus the chosen ``C`` and its CV
    accuracy (``cv_score``).
    """
    sklearn_or_error()
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    mean, std = x.mean(0), x.std(0) + 1e-6
    folds = int(min(5, np.bincount(y).min()))
    if folds < 2:
        raise ValueError("linear_probe: every label needs at least 2 training examples")
    search = GridSearchCV(
        LogisticRegression(max_iter=2000),
        {"C": list(PROBE_CS)},
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
        scoring="accuracy",
    )
    search.fit((x - mean) / std, y)
    probe = search.best_estimator_
    coef, intercept = probe.coef_, probe.intercept_
    if coef.shape[0] == 1:  # binary: sklearn keeps one row; softmax of (-z/2, z/2) is sigmoid(z)
        coef, intercept = (
            np.vstack([-coef / 2, coef / 2]),
            np.array([-intercept[0] / 2, intercept[0] / 2]),
        )
    weight = np.zeros((num_labels, x.shape[1]))
    bias = np.full(num_labels, -1e4)  # a label absent from the training data is never predicted
    weight[probe.classes_] = coef / std
    bias[probe.classes_] = intercept - (coef / std) @ mean
    return {
        "weight": torch.tensor(weight, dtype=torch.float32),
        "bias": torch.tensor(bias, dtype=torch.float32),
        "C": float(search.best_params_["C"]),
        "cv_score": float(search.best_score_),
        "cv_metric": "accuracy",
        "folds": folds,
    }
