"""The labels of a run (read by its label shape, :mod:`hftl.shapes`) and the validation split."""

from __future__ import annotations

import logging

from datasets import DatasetDict

from hftl.data.arguments import DataArguments
from hftl.data.columns import Columns
from hftl.errors import ConfigError, first_line
from hftl.shapes import LabelSpec, choose_shape

logger = logging.getLogger(__name__)


def read_labels(
    dataset: DatasetDict, columns: Columns, args: DataArguments, seed: int
) -> tuple[DatasetDict, LabelSpec]:
    """The labels of a run: the shape (``--problem_type``, else what the label column holds),
    the label column encoded by it, the validation split (stratified for classes), the labels
    the training data cannot teach refused, and the run's :class:`~hftl.shapes.LabelSpec`."""
    shape = choose_shape(dataset["train"].features, list(columns.labels), args)
    dataset, names = shape.encode(dataset, list(columns.labels), args)
    dataset = ensure_validation_split(dataset, args, columns.label, seed, stratify=shape.stratified)
    dataset, names = shape.check_coverage(
        dataset, columns.label, names, args.drop_unseen_validation_labels
    )
    spec = shape.spec(dataset["train"], columns.label, names, args)
    return dataset, spec


def ensure_validation_split(
    dataset: DatasetDict, args: DataArguments, label_column: str, seed: int, stratify: bool = True
) -> DatasetDict:
    """Use the dataset's validation split, else carve a seeded one out of train (stratified by
    the label where ``stratify``: classes)."""
    if (
        "validation" not in dataset
        and "test" in dataset
        and not (args.train_dir or args.train_file)
    ):
        logger.info("no 'validation' split: evaluating on the dataset's 'test' split")
        dataset["validation"] = dataset["test"]
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
