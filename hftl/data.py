"""Data for classification recipes: load, find the columns, name the labels, carve a validation split.

Sources, with the Hugging Face example scripts' argument names:

* ``--dataset_name`` (+ ``--dataset_config_name``): a Hub dataset, or a local dataset directory;
* ``--train_dir`` / ``--validation_dir``: image folders, one sub-folder per class;
* ``--train_file`` / ``--validation_file``: CSV, JSON, JSON Lines or Parquet.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from datasets import ClassLabel, DatasetDict, Image, Value, load_dataset

from hftl.config import ConfigError

logger = logging.getLogger(__name__)

FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
LABEL_NAMES = ("label", "labels", "class", "category", "target", "sentiment")
TEXT_NAMES = ("text", "sentence", "review", "content", "document", "tweet")


@dataclass
class DataArguments:
    """Where the data comes from and how it is read."""

    dataset_name: str | None = field(
        default=None, metadata={"help": "Hub dataset name or local dataset dir."}
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Dataset configuration name."}
    )
    train_dir: str | None = field(
        default=None, metadata={"help": "Image folder: one sub-folder per class."}
    )
    validation_dir: str | None = field(default=None, metadata={"help": "Validation image folder."})
    train_file: str | None = field(
        default=None, metadata={"help": "CSV / JSON / JSONL / Parquet file."}
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Validation file, same format."}
    )
    text_column_name: str | None = field(
        default=None, metadata={"help": "Text column (auto-detected)."}
    )
    label_column_name: str | None = field(
        default=None, metadata={"help": "Label column (auto-detected)."}
    )
    image_column_name: str | None = field(
        default=None, metadata={"help": "Image column (auto-detected)."}
    )
    validation_split_percentage: float = field(
        default=10,
        metadata={"help": "Without a validation split: % of train held out (stratified)."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Truncate train (debugging)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate validation."})
    max_seq_length: int = field(default=256, metadata={"help": "Text: tokens kept per example."})
    pad_to_max_length: bool = field(
        default=False,
        metadata={
            "help": "Text: pad every example to max_seq_length (run_glue's default). Default: "
            "pad each batch to its longest example, which is much faster on short texts."
        },
    )
    augmentation: bool = field(
        default=True, metadata={"help": "Images: random resized crop + flip in training."}
    )

    def __post_init__(self):
        sources = [
            name
            for name, value in (
                ("dataset_name", self.dataset_name),
                ("train_dir", self.train_dir),
                ("train_file", self.train_file),
            )
            if value
        ]
        if len(sources) > 1:
            raise ValueError(
                f"give one data source, not {' and '.join(sources)} (to replace a config's "
                f'{sources[0]} on the command line, add --{sources[0]} "")'
            )
        if not 0 < self.validation_split_percentage < 100:
            raise ValueError(
                f"validation_split_percentage must be in (0, 100), got {self.validation_split_percentage}"
            )
        for name in ("train_file", "validation_file"):
            path = getattr(self, name)
            if path and Path(path).suffix.lower() not in FILE_BUILDERS:
                raise ValueError(
                    f"{name}={path}: unsupported extension; use one of {', '.join(FILE_BUILDERS)}"
                )


def _with_assets_resolved(args: DataArguments) -> DataArguments:
    from dataclasses import replace

    from hftl.assets import resolve

    names = ("dataset_name", "train_dir", "validation_dir", "train_file", "validation_file")
    return replace(args, **{name: resolve(getattr(args, name)) for name in names})


@dataclass(frozen=True)
class Columns:
    label: str
    inputs: str  # the text or image column


def load_classification_data(
    args: DataArguments, task: str, *, seed: int, cache_dir: str | None = None
) -> tuple[DatasetDict, Columns, list[str]]:
    """Everything a classification recipe needs from its data, checked.

    Loads the splits, finds the label and input columns, refuses empty texts / unreadable images
    (naming them), makes the labels a ClassLabel with names from the data, and makes sure there is
    a validation split.

    Returns:
        (datasets with ``train`` and ``validation``, the columns, the label names)
    """
    raw = load_raw_datasets(args, cache_dir=cache_dir)
    columns = resolve_columns(raw, args, task=task)
    if task == "image":
        raw = check_images(raw, columns.inputs)
    else:
        check_text_rows(raw, columns.inputs)
    raw, labels = encode_labels(raw, columns.label)
    raw = ensure_validation_split(raw, args, columns.label, seed=seed)
    logger.info(
        "labels: %s; train %d, validation %d", labels, len(raw["train"]), len(raw["validation"])
    )
    return raw, columns, labels


def load_raw_datasets(args: DataArguments, cache_dir: str | None = None) -> DatasetDict:
    """Load the splits the arguments point at (at least ``train``).

    Paths may name hftl's offline assets, e.g. ``--train_dir hftl:mnist/train`` (fetched on first
    use, see :mod:`hftl.assets`).
    """
    args = _with_assets_resolved(args)
    if args.dataset_name:
        return load_dataset(args.dataset_name, args.dataset_config_name, cache_dir=cache_dir)
    if args.train_dir:
        files = {"train": _existing_dir(args.train_dir, "train_dir")}
        if args.validation_dir:
            files["validation"] = _existing_dir(args.validation_dir, "validation_dir")
        data_files = {split: os.path.join(path, "**") for split, path in files.items()}
        return load_dataset("imagefolder", data_files=data_files, cache_dir=cache_dir)
    if args.train_file:
        files = {"train": _existing_file(args.train_file, "train_file")}
        if args.validation_file:
            files["validation"] = _existing_file(args.validation_file, "validation_file")
        builders = {FILE_BUILDERS[Path(p).suffix.lower()] for p in files.values()}
        if len(builders) > 1:
            raise ConfigError("train_file and validation_file must have the same format")
        return load_dataset(builders.pop(), data_files=files, cache_dir=cache_dir)
    raise ConfigError("no data: give --dataset_name, --train_dir or --train_file")


def resolve_columns(dataset: DatasetDict, args: DataArguments, task: str) -> Columns:
    """Find the label column and the text (``task='text'``) or image (``task='image'``) column.

    Raises:
        ConfigError: a named column is missing, or the choice is ambiguous; the message lists the
            columns and the flag that settles it.
    """
    features = dataset["train"].features
    columns = list(features)
    label = _pick(
        "label",
        args.label_column_name,
        columns,
        typed=[c for c in columns if isinstance(features[c], ClassLabel)],
        by_name=[c for c in LABEL_NAMES if c in columns],
    )
    others = [c for c in columns if c != label]
    if task == "image":
        inputs = _pick(
            "image",
            args.image_column_name,
            others,
            typed=[c for c in others if isinstance(features[c], Image)],
            by_name=[c for c in ("image", "img", "pixel_values") if c in others],
        )
    else:
        strings = [
            c
            for c in others
            if isinstance(features[c], Value) and features[c].dtype in ("string", "large_string")
        ]
        inputs = _pick(
            "text",
            args.text_column_name,
            others,
            typed=strings if len(strings) == 1 else [],
            by_name=[c for c in TEXT_NAMES if c in strings] or strings,
        )
    return Columns(label=label, inputs=inputs)


def encode_labels(dataset: DatasetDict, label_column: str) -> tuple[DatasetDict, list[str]]:
    """Make the label column a ClassLabel (names from the data) and return the label names."""
    feature = dataset["train"].features[label_column]
    for split, data in dataset.items():
        missing = [i for i, value in enumerate(data[label_column]) if value is None or value == ""]
        if missing:
            raise ConfigError(
                f"split '{split}': {len(missing)} rows have no '{label_column}' (first: data row "
                f"{missing[0] + 1}); fill or drop them"
            )
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
        split = dataset["train"].train_test_split(
            test_size=args.validation_split_percentage / 100,
            seed=seed,
            stratify_by_column=label_column,
        )
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


def check_text_rows(dataset: DatasetDict, text_column: str) -> None:
    """Refuse rows without text, naming the split and row."""
    for split, data in dataset.items():
        for index, value in enumerate(data[text_column]):
            if value is None or not str(value).strip():
                raise ConfigError(
                    f"split '{split}': data row {index + 1} has an empty '{text_column}'; fill or drop it"
                )


def check_images(dataset: DatasetDict, image_column: str) -> DatasetDict:
    """Stop decoding images in ``datasets`` (hftl decodes them, naming any file that fails) and
    open every image's header now, so an unreadable file stops the run before training starts."""
    from PIL import Image as PILImage

    dataset = dataset.cast_column(image_column, Image(decode=False))
    for split, data in dataset.items():
        for index, value in enumerate(data[image_column]):
            try:
                with open_image(value) as image:
                    image.size  # noqa: B018 - reading the header is the check
            except (OSError, PILImage.DecompressionBombError, ValueError) as error:
                where = value.get("path") or f"data row {index + 1}"
                raise ConfigError(
                    f"split '{split}': image {where} cannot be read ({_first_line(error)}); "
                    "remove or replace it"
                ) from None
    return dataset


def open_image(value):
    """A PIL image from a ``datasets`` undecoded image value ({'path', 'bytes'}) or a PIL image."""
    from io import BytesIO

    from PIL import Image as PILImage

    if isinstance(value, PILImage.Image):
        return value
    if value.get("bytes"):
        return PILImage.open(BytesIO(value["bytes"]))
    return PILImage.open(value["path"])


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _pick(
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


def _existing_dir(path: str, flag: str) -> str:
    if not Path(path).is_dir():
        raise ConfigError(f"--{flag} {path}: no such directory")
    return path


def _existing_file(path: str, flag: str) -> str:
    if not Path(path).is_file():
        raise ConfigError(f"--{flag} {path}: no such file")
    return path
