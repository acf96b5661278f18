"""Which column is the label and which the task's input: named by a flag, else found by type or
name; an ambiguous or missing one is a one-line error naming the flag that settles it."""

from __future__ import annotations

from dataclasses import dataclass

from datasets import ClassLabel, DatasetDict, Value

from hftl.data.arguments import DataArguments
from hftl.errors import ConfigError

LABEL_NAMES = (
    "label",
    "labels",
    "class",
    "category",
    "target",
    "sentiment",
    "tags",
    "topics",
    "score",
    "rating",
)


@dataclass(frozen=True)
class Columns:
    label: str  # the label column (several label columns are encoded into the first)
    inputs: str  # the task's input column (text, image, ...)
    labels: tuple[str, ...] = ()  # every label column given (--label_column_name a,b,c)
    test_labelled: bool = True  # --do_predict: whether the test split has labels (is scored)

    def __post_init__(self):
        if not self.labels:
            object.__setattr__(self, "labels", (self.label,))


def resolve_columns(dataset: DatasetDict, args: DataArguments, task, task_args) -> Columns:
    """Find the label column, then the task's input column among the others.

    Raises:
        ConfigError: a named column is missing, or the choice is ambiguous; the message lists the
            columns and the flag that settles it.
    """
    features = dataset["train"].features
    columns = list(features)
    given = args.label_column_name
    if given and given not in columns and "," in given:  # one column per label or target
        labels = [c.strip() for c in given.split(",") if c.strip()]
        missing = [c for c in labels if c not in columns]
        if missing:
            raise ConfigError(
                f"--label_column_name {given}: no column {', '.join(missing)}; the columns are: "
                f"{', '.join(columns)}"
            )
        others = [c for c in columns if c not in labels]
        inputs = task.find_input_column(features, others, task_args)
        return Columns(label=labels[0], inputs=inputs, labels=tuple(labels))
    label = pick_column(
        "label",
        args.label_column_name,
        columns,
        typed=[c for c in columns if isinstance(features[c], ClassLabel)],
        by_name=[c for c in LABEL_NAMES if c in columns],
    )
    others = [c for c in columns if c != label]
    return Columns(label=label, inputs=task.find_input_column(features, others, task_args))


def check_test_columns(dataset: DatasetDict, needed: list[str], where: str) -> None:
    """The test split must have the columns the model reads (``needed``: the task's inputs)."""
    if "test" not in dataset:
        return
    missing = [c for c in needed if c not in dataset["test"].column_names]
    if missing:
        raise ConfigError(
            f"{where}: no column {', '.join(missing)} (what the model reads; it has "
            f"{', '.join(dataset['test'].column_names)}); give a test set with the training "
            "data's input column"
        )


def is_text(feature) -> bool:
    """A string column (text, or file paths)."""
    return isinstance(feature, Value) and feature.dtype in ("string", "large_string")


def pick_column(
    kind: str, given: str | None, columns: list[str], typed: list[str], by_name: list[str]
) -> str:
    flag = f"--{kind}_column_name"
    if given is not None:
        if given not in columns:
            raise ConfigError(
                f"{flag}={given} is not a column; the columns are: {', '.join(columns)}"
            )
        return given
    for candidates in (typed, by_name):
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise ConfigError(
                f"more than one column could be the {kind} ({', '.join(candidates)}); choose with {flag}"
            )
    raise ConfigError(f"no {kind} column found among {', '.join(columns)}; name it with {flag}")
