"""What a label shape is: one class per example, several labels, or numbers.

A shape owns everything that depends on what a label is: how the label column is read and
encoded, the ``problem_type`` written into the model's config (which ``pipeline()`` reads: softmax,
a sigmoid per label, or the raw value), the loss, the metrics and the report, how predictions are
read from the logits, the linear probe, and what the card says. Library code asks the shape (or
the run's :class:`LabelSpec`, which carries it) and never compares shape names.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hftl.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class LabelArguments:
    """The label options of a run (every shape reads them)."""

    problem_type: str = field(
        default="auto",
        metadata={
            "help": "What a label is: single_label_classification (one class per example), "
            "multi_label_classification (several labels: a list-valued column, a delimited string "
            "with --label_delimiter, or one 0/1 column per label), regression (a number, or "
            "several numeric columns). auto (default) decides from the data: a list column is "
            "multi-label, a float column regression (as run_classification.py decides)."
        },
    )
    label_delimiter: str | None = field(
        default=None,
        metadata={
            "help": "A text label column that holds several labels per row, separated by this "
            "(e.g. ',' for 'beach,sunset'): multi-label."
        },
    )
    class_weights: str | None = field(
        default=None,
        metadata={
            "help": "Imbalanced classes: weigh the loss per class (single-label) or per label's "
            "positives (multi-label, BCE pos_weight). auto / inverse (inverse frequency), "
            "effective or effective:BETA (effective number of samples, beta 0.999), a JSON file "
            "{label: weight}, or a mapping 'label=weight,label=weight'."
        },
    )
    label_thresholds: str = field(
        default="tuned",
        metadata={
            "help": "Multi-label decision thresholds: tuned (per label, the one that maximises "
            "that label's F1 on the validation split; saved in config.json as label_thresholds) "
            "or a number (one threshold for every label, e.g. 0.5)."
        },
    )
    regression_loss: str = field(
        default="mse",
        metadata={
            "help": "Regression: mse or huber (on the standardised targets).",
            "choices": ["mse", "huber"],
        },
    )
    huber_delta: float = field(
        default=1.0, metadata={"help": "Regression: the Huber loss's delta (standardised units)."}
    )
    standardize_targets: bool = field(
        default=True,
        metadata={
            "help": "Regression: train on (y - mean) / std of the training targets; the saved "
            "model predicts in the data's own units either way."
        },
    )

    def __post_init__(self):
        if self.huber_delta <= 0:
            raise ValueError(f"--huber_delta {self.huber_delta}: must be > 0")
        if self.label_thresholds != "tuned":
            try:
                value = float(self.label_thresholds)
            except ValueError:
                raise ValueError(
                    f"--label_thresholds {self.label_thresholds}: 'tuned' or a number in (0, 1)"
                ) from None
            if not 0 < value < 1:
                raise ValueError(f"--label_thresholds {value}: must be in (0, 1)")


@dataclass
class LabelSpec:
    """The labels of one run: the shape, the label (or target) names, and what the shape learned
    from the training data (counts, class weights, the targets' mean and scale, thresholds).

    It travels with the run: the model's config is set from it (:meth:`configure`), the trainer's
    loss is :meth:`loss`, its metrics :meth:`compute_metrics`, the final report :meth:`report`.
    """

    shape: LabelShape
    names: list[str]
    counts: list[int] | None = None
    class_weights: list[float] | None = None
    class_weight_rule: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    thresholds: list[float] | None = None
    threshold_rule: str | None = None
    regression_loss: str = "mse"
    huber_delta: float = 1.0
    # regression: whether the model's output layer holds the targets' scale (after
    # LabelShape.finish_model, and in a saved model) rather than predicting standardised targets
    scale_in_model: bool = False

    @classmethod
    def from_config(cls, config) -> LabelSpec:
        """The spec a model's config implies (its ``problem_type`` and ``id2label``, saved
        thresholds; None: single-label classes): what a trainer uses when it is given none."""
        from hftl.shapes import shape_for_problem_type

        shape = shape_for_problem_type(getattr(config, "problem_type", None))
        id2label = getattr(config, "id2label", None) or {}
        names = [str(id2label[i]) for i in sorted(id2label)] or [
            f"LABEL_{i}" for i in range(getattr(config, "num_labels", 0))
        ]  # a model without a config (a bare module): classes, unnamed
        saved = getattr(config, "label_thresholds", None)
        thresholds = [float(saved[name]) for name in names] if saved else None
        return cls(shape=shape, names=names, thresholds=thresholds)

    @property
    def problem_type(self) -> str:
        return self.shape.problem_type

    @property
    def num_outputs(self) -> int:
        return len(self.names)

    def configure(self, config) -> None:
        """Write the shape into a model config (in place): ``problem_type``, ``num_labels``,
        ``id2label`` / ``label2id`` and, for multi-label, the tuned thresholds."""
        config.problem_type = self.problem_type
        config.num_labels = self.num_outputs
        config.id2label = dict(enumerate(self.names))
        config.label2id = {name: i for i, name in enumerate(self.names)}
        if self.thresholds is not None:
            config.label_thresholds = dict(zip(self.names, self.thresholds, strict=True))

    def check_training(self, args) -> None:
        """Fit the training arguments to the shape (in place): a ``metric_for_best_model`` that
        another shape reports but this one does not (the recipes' configs name ``accuracy``)
        becomes this shape's main metric, with a log line; ``greater_is_better`` follows the
        shape's metrics (a metric of the user's own ``compute_metrics`` is left as it is). Label
        smoothing on a shape without classes is an error."""
        from hftl.shapes import SHAPES

        if args.label_smoothing_factor and not self.shape.takes_label_smoothing:
            raise ConfigError(
                f"--label_smoothing_factor {args.label_smoothing_factor}: a {self.shape.name} run "
                "has no classes to smooth; drop it"
            )
        metric = args.metric_for_best_model
        if metric is None:
            return
        name = metric.removeprefix("eval_")
        others = {m for shape in SHAPES for m in shape.metric_names}
        if name in others and name not in self.shape.metric_names:
            logger.warning(
                "metric_for_best_model %s: a %s run reports %s; choosing by %s instead",
                metric, self.shape.name, ", ".join(self.shape.metric_names),
                self.shape.default_metric,
            )  # fmt: skip
            name = self.shape.default_metric
            args.metric_for_best_model = name
        if name in self.shape.metric_names:
            args.greater_is_better = name not in self.shape.lower_is_better

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0):
        return self.shape.loss(self, logits, labels, smoothing)

    def outputs(self, logits) -> np.ndarray:
        """What the saved model's ``pipeline()`` reports per output, from the model's logits:
        probabilities (softmax or sigmoid) or values in the data's units."""
        return self.shape.outputs(self, np.asarray(logits, dtype=np.float64))

    def compute_metrics(self, eval_prediction) -> dict[str, float]:
        """A ``Trainer(compute_metrics=...)`` function: the shape's scalar metrics."""
        report = self.report(first_output(eval_prediction.predictions), eval_prediction.label_ids)
        return {key: report[key] for key in self.shape.metric_names}

    def report(self, logits, labels) -> dict:
        """Everything the shape reports on ``logits`` against ``labels`` (eval_report.json)."""
        return self.shape.report(self, np.asarray(logits, dtype=np.float64), np.asarray(labels))

    def record(self) -> dict:
        """The labels for ``run_info.json`` and the card."""
        record = {"shape": self.shape.name, "problem_type": self.problem_type}
        if self.counts is not None:
            record["train_counts"] = dict(zip(self.names, self.counts, strict=True))
        if self.class_weights is not None:
            record["class_weights"] = {
                "rule": self.class_weight_rule,
                "weights": {
                    n: round(w, 6) for n, w in zip(self.names, self.class_weights, strict=True)
                },
            }
        if self.mean is not None:
            record["targets"] = {
                n: {"mean": m, "std": s}
                for n, m, s in zip(self.names, self.mean, self.std, strict=True)
            }
            record["loss"] = self.regression_loss
        if self.thresholds is not None:
            record["thresholds"] = {
                "rule": self.threshold_rule,
                "values": {
                    n: round(t, 4) for n, t in zip(self.names, self.thresholds, strict=True)
                },
            }
        return record


class LabelShape:
    """A label shape. Subclasses (one module each in :mod:`hftl.shapes`) set what differs.

    Attributes:
        name: the registry name (``single_label``, ``multi_label``, ``regression``).
        problem_type: transformers' ``config.problem_type`` for it.
        summary: one line for the docs and ``--help``.
        metric_names: the scalar metrics of every evaluation (``eval_<name>``).
        default_metric: ``metric_for_best_model`` where the run's choice is not one of them.
        lower_is_better: the metrics where smaller is better (``greater_is_better`` false).
        stratified: whether the held-out validation split is stratified by the label.
        labels_title: what the card calls the names in ``id2label``.
        takes_class_weights / takes_label_smoothing: what the loss takes.
    """

    name: str = ""
    problem_type: str = ""
    summary: str = ""
    metric_names: tuple[str, ...] = ()
    default_metric: str = ""
    lower_is_better: frozenset[str] = frozenset()
    stratified: bool = False
    labels_title: str = "Labels"
    takes_class_weights: bool = True
    takes_label_smoothing: bool = True

    # ---- reading labels --------------------------------------------------------------------
    def claims(self, features, label_columns: list[str], args) -> bool:
        """Whether ``problem_type: auto`` makes data with these label column(s) this shape."""
        return False

    def encode(self, dataset, label_columns: list[str], args) -> tuple:
        """(the dataset with the labels in ``label_columns[0]`` in model form, the names)."""
        raise NotImplementedError

    def check_coverage(self, dataset, column: str, names: list[str], drop_unseen: bool) -> tuple:
        """(the dataset, the names) after refusing labels the training data cannot teach."""
        return dataset, names

    def spec(self, train, column: str, names: list[str], label_args) -> LabelSpec:
        """The run's :class:`LabelSpec` from the encoded training split."""
        return LabelSpec(shape=self, names=list(names))

    def label_counts(self, data, column: str, names: list[str]) -> list[int] | None:
        """How many rows of an encoded split have each label (None: not a count of labels)."""
        return None

    # ---- training and evaluation ------------------------------------------------------------
    def loss(self, spec: LabelSpec, logits, labels, smoothing: float):
        raise NotImplementedError

    def outputs(self, spec: LabelSpec, logits: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def report(self, spec: LabelSpec, logits: np.ndarray, labels: np.ndarray) -> dict:
        raise NotImplementedError

    # ---- the reference task (forgetting, ewc, lwf, replay) ---------------------------------
    def align(self, dataset, column: str, spec: LabelSpec, known: list[str], model: str) -> tuple:
        """(the dataset, its spec) with the labels in the order of a trained model's outputs
        (``known``: its ``id2label``); a label the model does not know is a one-line error."""
        raise NotImplementedError

    def distill(self, spec: LabelSpec, student, teacher, temperature: float):
        """LwF's term pulling ``student`` logits toward ``teacher`` logits (a batch mean)."""
        raise NotImplementedError

    def nll(self, spec: LabelSpec, logits, target):
        """The negative log-likelihood of ``target`` under the model's output, summed over the
        batch (the empirical Fisher's loss)."""
        raise NotImplementedError

    def sample(self, spec: LabelSpec, logits, generator: torch.Generator):
        """A target drawn from the model's own predictive distribution (the true Fisher's)."""
        raise NotImplementedError

    def probe_targets(self, spec: LabelSpec, labels: np.ndarray) -> np.ndarray:
        """What the linear probe fits (the training form of the labels)."""
        return labels

    def fit_probe(self, spec: LabelSpec, features, labels, seed: int) -> dict:
        """A linear head fitted on cached features: ``weight`` [outputs, D], ``bias``, ``C``
        (or alpha), ``cv_score`` and ``folds``."""
        raise NotImplementedError

    def predictions(self, spec: LabelSpec, logits: np.ndarray) -> list[dict]:
        """One JSON-able record per row of ``logits``: what the model predicts (the label(s) or
        value(s)) and the scores behind it, as ``predictions.jsonl`` and ``hftl predict`` write
        them. Its ``prediction`` is the text ``predict_results.txt`` writes (as the HF example
        scripts do)."""
        raise NotImplementedError

    def settle(self, spec: LabelSpec, logits: np.ndarray, labels: np.ndarray) -> None:
        """After the final evaluation (``logits`` on the validation split), before its report:
        what is chosen on it (multi-label: the tuned thresholds), into ``spec``."""

    def finish_model(self, spec: LabelSpec, model) -> None:
        """Before the model is saved, after the report: what the saved model must hold
        (regression: the targets' scale written into the output layer), in place."""

    # ---- the card --------------------------------------------------------------------------
    def card_metrics(self, report: dict) -> list[tuple[str, str, float]]:
        """(metric type, display name, value) for the card's ``model-index``."""
        return []

    def summary_line(self, report: dict) -> str:
        """One line for the log and the card."""
        return ""


def read_weight_mapping(value: str, names: list[str]) -> list[float]:
    """``--class_weights`` given as a JSON file or ``label=weight,...``: a weight per name (a
    label left out weighs 1); a name that is not a label is an error."""
    path = Path(value).expanduser()
    if path.suffix.lower() == ".json" or path.is_file():
        try:
            mapping = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"--class_weights {value}: cannot read it as JSON ({error})"
            ) from None
        if not isinstance(mapping, dict):
            raise ConfigError(f"--class_weights {value}: a JSON object {{label: weight}} expected")
    else:
        mapping = {}
        for part in value.split(","):
            label, sep, weight = part.partition("=")
            if not sep:
                raise ConfigError(
                    f"--class_weights {value}: 'auto', 'inverse', 'effective[:beta]', a JSON file, "
                    "or 'label=weight,...' (this part has no '=': "
                    f"{part!r})"
                )
            mapping[label.strip()] = weight.strip()
    unknown = sorted(set(map(str, mapping)) - set(names))
    if unknown:
        raise ConfigError(
            f"--class_weights: {', '.join(unknown[:3])} not among the labels "
            f"({', '.join(names[:6])}{', ...' if len(names) > 6 else ''})"
        )
    weights = []
    for name in names:
        raw = mapping.get(name, 1.0)
        try:
            weight = float(raw)
        except (TypeError, ValueError):
            raise ConfigError(
                f"--class_weights: the weight of {name!r} ({raw!r}) is not a number"
            ) from None
        if not np.isfinite(weight) or weight <= 0:
            raise ConfigError(f"--class_weights: the weight of {name!r} must be > 0, got {raw}")
        weights.append(weight)
    return weights


def remap(dataset, column: str, feature, function):
    """``dataset`` (a ``DatasetDict``) with ``column`` rewritten by ``function`` (a batched map)
    and typed ``feature``, split by split."""
    from datasets import DatasetDict

    out = DatasetDict()
    for split, data in dataset.items():
        features = data.features.copy()
        features[column] = feature
        out[split] = data.map(function, batched=True, features=features)
    return out


def effective_beta(rule: str) -> float:
    """The beta of ``effective`` / ``effective:BETA`` (Cui et al. 2019; default 0.999)."""
    _, _, beta = rule.partition(":")
    try:
        value = float(beta) if beta else 0.999
    except ValueError:
        raise ConfigError(f"--class_weights {rule}: effective:BETA with BETA in (0, 1)") from None
    if not 0 < value < 1:
        raise ConfigError(f"--class_weights {rule}: BETA must be in (0, 1)")
    return value


def effective_number(counts: np.ndarray, beta: float) -> np.ndarray:
    """(1 - beta^n) / (1 - beta): the effective number of ``n`` samples."""
    return (1 - np.power(beta, counts)) / (1 - beta)


def set_class_weights(spec: LabelSpec, rule: str | None, inverse, effective,
                      given: str = "given") -> None:  # fmt: skip
    """``--class_weights rule`` into ``spec`` (``class_weights``, ``class_weight_rule``): ``auto``
    / ``inverse`` -> ``inverse()``, ``effective[:beta]`` -> ``effective(beta)`` (each the shape's
    (weights, description)), anything else a JSON file or ``label=weight`` mapping."""
    if not rule:
        return
    if rule in ("auto", "inverse"):
        weights, spec.class_weight_rule = inverse()
    elif rule.startswith("effective"):
        weights, spec.class_weight_rule = effective(effective_beta(rule))
    else:
        spec.class_weights = read_weight_mapping(rule, spec.names)
        spec.class_weight_rule = f"{given} ({rule})"
        return
    spec.class_weights = [float(w) for w in weights]


def by_name(names: list[str], row) -> dict[str, float]:
    """One prediction row's numbers keyed by label or target name (6 decimals), for the
    predictions files."""
    return {name: round(float(value), 6) for name, value in zip(names, row, strict=True)}


def first_output(predictions):
    """The logits among a prediction's outputs (a model may return more than one array)."""
    return predictions[0] if isinstance(predictions, tuple) else predictions


def named_outputs(known: list[str], model: str) -> None:
    """A trained model whose outputs have no names cannot be matched with labels by name."""
    if all(str(label).startswith("LABEL_") for label in known):
        raise ConfigError(
            f"--reference_model_name_or_path {model}: its head has no label names (LABEL_0, ...), "
            "so its classes cannot be matched with the reference data; give a fine-tuned model"
        )


def unknown_labels(names: list[str], known: list[str], model: str) -> None:
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ConfigError(
            f"labels {', '.join(unknown[:3])} are not among the reference model's "
            f"({', '.join(known[:5])}{', ...' if len(known) > 5 else ''}); give the data the "
            f"model {model} was trained on"
        )
