"""The labels of a run (read by its label shape, :mod:`hftl.shapes`) and the validation split."""

from __future__ import annotations

import logging
from dataclasses import replace

from datasets import DatasetDict

from hftl.data.arguments import DataArguments
from hftl.data.columns import Columns
from hftl.errors import ConfigError, first_line, shown
from hftl.shapes import LabelSpec, choose_shape

logger = logging.getLogger(__name__)


def read_labels(
    dataset: DatasetDict, columns: Columns, args: DataArguments, seed: int
) -> tuple[DatasetDict, LabelSpec]:
    """The labels of a run: the shape (``--problem_type``, else what the label column holds),
    the label column encoded by it, the validation split (stratified for classes), the labels
    the training data cannot teach refused, and the run's :class:`~hftl.shapes.LabelSpec`."""
    shape = choose_shape(dataset["train"].features, list(columns.labels), args)
    unlabelled = dataset.pop("test") if "test" in dataset and not columns.test_labelled else None
    dataset, names = shape.encode(dataset, list(columns.labels), args)
    if "test" in dataset:
        check_test_labels(shape, dataset, columns.label, names)
    dataset = ensure_validation_split(dataset, args, columns.label, seed, stratify=shape.stratified)
    dataset, names = shape.check_coverage(
        dataset, columns.label, names, args.drop_unseen_validation_labels
    )
    spec = shape.spec(dataset["train"], columns.label, names, args)
    if unlabelled is not None:
        dataset["test"] = with_placeholder_labels(unlabelled, dataset["train"], columns)
    return dataset, spec


def split_test_labels(dataset: DatasetDict, columns: Columns) -> tuple[DatasetDict, Columns]:
    """Whether the test split has labels: every label column, with values. Hidden labels (every
    value -1 or empty, as in GLUE's test splits) are no labels: those columns are dropped. A
    test split without labels is predicted, not scored (``columns.test_labelled`` false)."""
    if "test" not in dataset:
        return dataset, columns
    test = dataset["test"]
    present = [c for c in columns.labels if c in test.column_names]
    hidden = bool(present) and all(
        value is None or value == -1 for value in test[present[0]]
    )  # fmt: skip
    if present and not hidden and len(present) == len(columns.labels):
        return dataset, columns
    if present and not hidden:
        missing = [c for c in columns.labels if c not in present]
        raise ConfigError(
            f"the test split has label columns {', '.join(present)} but not {', '.join(missing)}; "
            "give all of them, or none (to predict without scoring)"
        )
    if hidden:
        logger.info("the test split's labels are hidden (%s -1 or empty): predicted, not scored",
                    present[0])  # fmt: skip
    else:
        logger.info("the test split has no '%s' column: predicted, not scored", columns.label)
    dataset["test"] = test.remove_columns(present)
    return dataset, replace(columns, test_labelled=False)


def check_test_labels(shape, dataset: DatasetDict, column: str, names: list[str]) -> None:
    """A test label the training data does not have is one the model cannot predict: refused
    before training."""
    trained = shape.label_counts(dataset["train"], column, names)
    tested = shape.label_counts(dataset["test"], column, names)
    if trained is None:
        return
    unknown = [n for n, a, b in zip(names, trained, tested, strict=True) if b and not a]
    if unknown:
        raise ConfigError(
            f"the test split has labels the training data does not ({shown(unknown)}); the model "
            "cannot predict them: drop those test rows, or add training examples of them"
        )


def with_placeholder_labels(test, train, columns: Columns):
    """The unlabelled test split with the training split's columns (those it has) and a label
    column of the training split's type holding its first label: the batches then have the
    shape the trainer reads. These labels are never scored (``columns.test_labelled``)."""
    test = test.select_columns([c for c in train.column_names if c in test.column_names])
    feature = train.features[columns.label]
    return test.add_column(columns.label, [train[0][columns.label]] * len(test), feature=feature)


def ensure_validation_split(
    dataset: DatasetDict, args: DataArguments, label_column: str, seed: int, stratify: bool = True
) -> DatasetDict:
    """Use the dataset's validation split, else carve a seeded one out of train (stratified by
    the label where ``stratify``: classes)."""
    if "validation" not in dataset:
        try:
            split = dataset["train"].train_test_split(
                test_size=args.validation_split_percentage / 100,
                seed=seed,
                stratify_by_column=label_column if stratify else None,
            )
        except ValueError as error:
            classes = len(getattr(dataset["train"].features[label_column], "names", ()))
            raise ConfigError(
                f"--validation_split_percentage {args.validation_split_percentage} of "
                f"{len(dataset['train'])} training examples cannot hold out every one of the "
                f"{classes} classes ({first_line(error)}); raise it, or give a validation split "
                "(--validation_file / --validation_dir)"
            ) from None
        dataset["train"], dataset["validation"] = split["train"], split["test"]
        logger.info(
            "held out %d of %d training examples for validation (%s, seed %d)",
            len(split["test"]),
            len(split["train"]) + len(split["test"]),
            "stratified" if stratify else "random",
            seed,
        )
    if args.max_train_samples is not None:
        dataset["train"] = (
            dataset["train"]
            .shuffle(seed=seed)
            .select(range(min(args.max_train_samples, len(dataset["train"]))))
        )
    if args.max_eval_samples is not None:
        dataset["validation"] = dataset["validation"].select(
            range(min(args.max_eval_samples, len(dataset["validation"])))
        )
    return dataset
