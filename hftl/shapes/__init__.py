"""Label shapes, one module each, behind a validated registry.

    from hftl.shapes import SHAPES
    SHAPES.get("multi_label")      # the MultiLabel shape; an unknown name lists the choices

A shape (:class:`~hftl.shapes.base.LabelShape`) owns what a label is: reading and encoding the
label column, the ``problem_type`` in the saved config, the loss, the metrics and report, the
linear probe, what the saved model must hold (thresholds, the targets' scale) and the card's
metrics. A run's labels are a :class:`~hftl.shapes.base.LabelSpec` (the shape, the names and what
was learned from the training data).
"""

from hftl.errors import ConfigError
from hftl.registry import Registry
from hftl.shapes.base import LabelArguments, LabelShape, LabelSpec, first_output
from hftl.shapes.multi_label import MultiLabel, tune_thresholds
from hftl.shapes.regression import Regression, fold_scale
from hftl.shapes.single_label import SingleLabel, fit_linear_probe

SHAPES: Registry[LabelShape] = Registry("label shape")
for _shape in (SingleLabel(), MultiLabel(), Regression()):
    SHAPES.register(_shape)

AUTO = "auto"


def shape_of_metrics(metrics) -> LabelShape | None:
    """The shape whose every metric an evaluation's metrics (``eval_<name>``) hold (of several,
    the one with the most), or None (a user's own ``compute_metrics``)."""
    names = {str(key).removeprefix("eval_") for key in metrics}
    matching = [shape for shape in SHAPES if set(shape.metric_names) <= names]
    return max(matching, key=lambda shape: len(shape.metric_names), default=None)


def shape_for_problem_type(problem_type: str | None) -> LabelShape:
    """The shape of a transformers ``problem_type`` (or a shape name); None is single-label."""
    if problem_type in (None, AUTO):
        return SHAPES.get("single_label")
    for shape in SHAPES:
        if problem_type in (shape.problem_type, shape.name):
            return shape
    choices = ", ".join(s.problem_type for s in SHAPES)
    raise ConfigError(f"--problem_type {problem_type}: choose auto, {choices}")


def choose_shape(features, label_columns: list[str], label_args) -> LabelShape:
    """The run's shape: ``--problem_type`` where given, else the first registered shape (the
    most specific first) that claims the label column(s)."""
    if label_args.problem_type != AUTO:
        return shape_for_problem_type(label_args.problem_type)
    for shape in reversed(list(SHAPES)):  # regression, multi-label, then single-label
        if shape.claims(features, label_columns, label_args):
            return shape
    return SHAPES.get("single_label")


__all__ = [
    "AUTO",
    "SHAPES",
    "LabelArguments",
    "LabelShape",
    "LabelSpec",
    "choose_shape",
    "first_output",
    "fit_linear_probe",
    "fold_scale",
    "shape_for_problem_type",
    "shape_of_metrics",
    "tune_thresholds",
]
