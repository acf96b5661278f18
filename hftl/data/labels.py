"""Label names from the data, the validation split, and every class seen in training."""

from __future__ import annotations

import logging
from collections import Counter

from datasets import ClassLabel, DatasetDict, Value

from hftl.data.arguments import DataArguments
from hftl.errors import ConfigError, first_line, shown

logger = logging.getLogger(__name__)


def encode_labels(dataset: DatasetDict, label_column: str) -> tuple[DatasetDict, list[str]]:
    """Make the label column a ClassLabel (names from the data) and return the label names."""
    feature = dataset["train"].features[label_column]
    for split, data in dataset.items():
        missing = [i for i, value in enumerate(data[label_column]) if value is None or value == ""]
        # datasets' ClassLabel -1 means no label (e.g. the hidden labels of a GLUE test split)
        if isinstance(data.features[label_column], ClassLabel) and -1 in data[label_column]:
            raise ConfigError(
                f"split '{split}': rows with '{label_column}' -1, i.e. no label (a test split "
                "whose labels the dataset hides?); evaluate on a labelled split "
                "(--eval_split_name) or drop those rows"
            )
        if missing:
            raise ConfigError(
                f"split '{split}': {len(missing)} rows have no '{label_column}' (first: data row "
                f"{missing[0] + 1}); fill or drop them"
            )
    if not isinstance(feature, ClassLabel) and feature.dtype.startswith("float"):
        values = {v for data in dataset.values() for v in data[label_column]}
        fractional = sorted(v for v in values if float(v) != int(v))
        if fractional:
            raise ConfigError(
                f"label column '{label_column}' holds real numbers ({shown(fractional)}); hftl "
                "trains classifiers: turn them "
                "into classes first, or name the class column with --label_column_name"
            )
        dataset = dataset.cast_column(label_column, Value("int64"))
        feature = dataset["train"].features[label_column]
    if not isinstance(feature, ClassLabel):
        names = sorted({str(v) for data in dataset.values() for v in data[label_column]})
        dataset = (
            dataset.cast_column(label_column, Value("string"))
            if feature.dtype != "string"
            else dataset
        )
        dataset = dataset.cast_column(label_column, ClassLabel(names=names))
        feature = dataset["train"].features[label_column]
    return dataset, list(feature.names)


def ensure_validation_split(
    dataset: DatasetDict, args: DataArguments, label_column: str, seed: int
) -> DatasetDict:
    """Use the dataset's validation split, else carve a stratified, seeded one out of train."""
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
                stratify_by_column=label_column,
            )
        except ValueError as error:
            classes = len(dataset["train"].features[label_column].names)
            raise ConfigError(
                f"--validation_split_percentage {args.validation_split_percentage} of "
                f"{len(dataset['train'])} training examples cannot hold out every one of the "
                f"{classes} classes ({first_line(error)}); raise it, or give a validation split "
                "(--validation_file / --validation_dir)"
            ) from None
        dataset["train"], dataset["validation"] = split["train"], split["test"]
        logger.info(
            "held out %d of %d training examples for validation (stratified, seed %d)",
            len(split["test"]),
            len(split["train"]) + len(split["test"]),
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


def check_label_coverage(
    dataset: DatasetDict, label_column: str, *, drop_unseen: bool = False
) -> tuple[DatasetDict, list[str]]:
    """Every class needs training examples, and there must be two classes at least.

    A class with no training example (a validation class the training data never has, or a
    label name no training row uses) is an error naming it; with ``drop_unseen`` its validation
    rows are dropped, with a warning, and it leaves the label set.

    Returns:
        The datasets (labels renumbered if a class left) and the label names.
    """
    names = list(dataset["train"].features[label_column].names)
    trained = Counter(dataset["train"][label_column])
    if len(trained) < 2:
        only = names[next(iter(trained))] if trained else "none"
        raise ConfigError(
            f"the training data has one class ({only!r}); a classifier needs examples of two "
            "classes at least"
        )
    untrained = [i for i in range(len(names)) if i not in trained]
    if not untrained:
        return dataset, names
    in_validation = Counter(dataset["validation"][label_column])
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
        batch[label_column] = [renumber[v] for v in batch[label_column]]
        return batch

    out = DatasetDict()
    for split, data in dataset.items():
        data = data.filter(lambda row: row[label_column] in renumber)
        features = data.features.copy()
        features[label_column] = ClassLabel(names=kept)
        out[split] = data.map(relabel, batched=True, features=features)
    return out, kept
