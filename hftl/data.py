"""Data for classification recipes: load, find the columns, name the labels, carve a validation split.

Sources, with the Hugging Face example scripts' argument names:

* ``--dataset_name`` (+ ``--dataset_config_name``): a Hub dataset, or a local dataset directory;
* ``--train_dir`` / ``--validation_dir``: folders with one sub-folder per class, read with the
  task's folder builder (``imagefolder`` for images);
* ``--train_file`` / ``--validation_file``: CSV, JSON, JSON Lines or Parquet.

Everything read here is checked where it is read, and a problem is a one-line
:class:`~hftl.errors.ConfigError` naming the file, folder, row, column or class: empty, binary or
non-UTF-8 files, files whose columns differ, image folders that are not one folder per class (an
empty class folder, images outside class folders or below them, broken links), unreadable images,
empty texts, missing labels, real-valued labels, a single class, a validation split too small to
hold every class, and classes without a training example (or, with
``--drop_unseen_validation_labels``, their validation rows dropped with a warning).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from datasets import ClassLabel, DatasetDict, Value, load_dataset

from hftl.errors import ConfigError, first_line, shown

logger = logging.getLogger(__name__)

FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
LABEL_NAMES = ("label", "labels", "class", "category", "target", "sentiment")


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
        default=None, metadata={"help": "A folder with one sub-folder per class (images)."}
    )
    validation_dir: str | None = field(
        default=None, metadata={"help": "Validation folder, same layout."}
    )
    train_file: str | None = field(
        default=None, metadata={"help": "CSV / JSON / JSONL / Parquet file."}
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Validation file, same format."}
    )
    train_split_name: str = field(
        default="train",
        metadata={"help": "--dataset_name: the split to train on (as in the HF audio examples)."},
    )
    eval_split_name: str = field(
        default="validation",
        metadata={
            "help": "--dataset_name: the split to evaluate on (e.g. validation_matched for MNLI); "
            "without a 'validation' split, the dataset's 'test' split, else a held-out share of "
            "train."
        },
    )
    label_column_name: str | None = field(
        default=None, metadata={"help": "Label column (auto-detected)."}
    )
    validation_split_percentage: float = field(
        default=10,
        metadata={
            "help": "Without a validation split: the percentage of train held out (stratified)."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Truncate train (debugging)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate validation."})
    drop_unseen_validation_labels: bool = field(
        default=False,
        metadata={
            "help": "Validation rows whose class never occurs in training: false (default) stops "
            "with an error naming the class; true drops those rows, with a warning."
        },
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
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} {value}: must be >= 1")
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
    inputs: str  # the task's input column (text, image, ...)


def load_classification_data(
    args: DataArguments, task, task_args, *, seed: int, cache_dir: str | None = None,
    token: str | None = None,
) -> tuple[DatasetDict, Columns, list[str]]:  # fmt: skip
    """Everything a classification recipe needs from its data, checked.

    Loads the splits, finds the label column and the task's input column, refuses unusable
    inputs (the task names them: empty texts, unreadable images), makes the labels a ClassLabel
    with names from the data, and makes sure there is a validation split.

    Args:
        task: the :class:`~hftl.tasks.base.Task` (or its registered name).
        task_args: the task's own arguments (``task.arguments``).

    Returns:
        (datasets with ``train`` and ``validation``, the columns, the label names)
    """
    from hftl.tasks import task_of

    task = task_of(task)
    raw = load_raw_datasets(args, task, cache_dir=cache_dir, token=token)
    columns = resolve_columns(raw, args, task, task_args)
    raw = task.check_inputs(raw, columns.inputs, task_args)
    raw, labels = encode_labels(raw, columns.label)
    raw = ensure_validation_split(raw, args, columns.label, seed=seed)
    raw, labels = check_label_coverage(
        raw, columns.label, drop_unseen=args.drop_unseen_validation_labels
    )
    logger.info(
        "labels: %s; train %d, validation %d", labels, len(raw["train"]), len(raw["validation"])
    )
    return raw, columns, labels


def load_raw_datasets(
    args: DataArguments, task, cache_dir: str | None = None, token: str | None = None
) -> DatasetDict:
    """Load the splits the arguments point at (at least ``train``).

    Paths may name hftl's offline assets, e.g. ``--train_dir hftl:mnist/train`` (fetched on first
    use, see :mod:`hftl.assets`). ``--train_dir`` is read with the task's folder builder
    (``imagefolder`` for images).
    """
    args = _with_assets_resolved(args)
    if args.dataset_name:
        dataset = _read(
            f"--dataset_name {args.dataset_name}",
            lambda: load_dataset(
                args.dataset_name, args.dataset_config_name, cache_dir=cache_dir, token=token
            ),
            local=Path(args.dataset_name).expanduser().exists(),
        )
        return _named_splits(dataset, args)
    if args.train_dir:
        if task.folder_builder is None:
            raise ConfigError(
                f"--train_dir {args.train_dir}: the {task.name} task reads no class folders; give "
                "--train_file or --dataset_name"
            )
        extensions = task.folder_extensions
        folders = {"train": ("train_dir", _existing_dir(args.train_dir, "train_dir"))}
        if args.validation_dir:
            folders["validation"] = (
                "validation_dir",
                _existing_dir(args.validation_dir, "validation_dir"),
            )
        counts = {
            split: scan_class_folder(path, flag, extensions, task.input_name)
            for split, (flag, path) in folders.items()
        }
        data_files = {split: os.path.join(path, "**") for split, (_, path) in folders.items()}
        where = " and ".join(f"--{flag} {path}" for flag, path in folders.values())
        dataset = _read(
            where,
            lambda: load_dataset(task.folder_builder, data_files=data_files, cache_dir=cache_dir),
        )
        _check_folder_read(dataset, counts, folders)
        return dataset
    if args.train_file:
        files = {"train": ("train_file", _existing_file(args.train_file, "train_file"))}
        if args.validation_file:
            files["validation"] = (
                "validation_file",
                _existing_file(args.validation_file, "validation_file"),
            )
        builders = {FILE_BUILDERS[Path(p).suffix.lower()] for _, p in files.values()}
        if len(builders) > 1:
            raise ConfigError("train_file and validation_file must have the same format")
        builder = builders.pop()
        splits = {}
        for split, (flag, path) in files.items():
            check_data_file(path, flag, builder)
            splits[split] = _read(
                f"--{flag} {path}",
                lambda path=path: load_dataset(builder, data_files=path, cache_dir=cache_dir)[
                    "train"
                ],
                kind=builder.upper(),
            )
            if len(splits[split]) == 0:
                raise ConfigError(f"--{flag} {path}: no rows; give a file with data")
        _check_same_columns(splits, files)
        return DatasetDict(splits)
    raise ConfigError("no data: give --dataset_name, --train_dir or --train_file")


def _named_splits(dataset: DatasetDict, args: DataArguments) -> DatasetDict:
    """``train`` and ``validation`` (or ``test``, the fallback, where there is no validation
    split) from the splits the arguments name, and no others; a named split the dataset lacks is
    an error listing the ones it has."""
    where = f"--dataset_name {args.dataset_name}"
    if args.dataset_config_name:
        where += f" --dataset_config_name {args.dataset_config_name}"
    for flag, name in (("train_split_name", args.train_split_name),
                       ("eval_split_name", args.eval_split_name)):  # fmt: skip
        if name not in dataset and (flag == "train_split_name" or name != "validation"):
            raise ConfigError(
                f"--{flag} {name}: {where} has no such split (it has {', '.join(dataset)}); "
                f"name one of them with --{flag}"
            )
    splits = {"train": dataset[args.train_split_name]}
    if args.eval_split_name in dataset:
        splits["validation"] = dataset[args.eval_split_name]
    elif "test" in dataset:  # the usual fallback (ensure_validation_split)
        splits["test"] = dataset["test"]
    if (args.train_split_name, args.eval_split_name) != ("train", "validation"):
        logger.info(
            "training on split '%s', evaluating on '%s'", args.train_split_name,
            args.eval_split_name,
        )  # fmt: skip
    return DatasetDict(splits)  # only the splits used: others (hidden test labels) are not read


@contextlib.contextmanager
def _no_dataset_bars(local: bool):
    """No ``datasets`` progress bars while local files are read ("Downloading data" for a file
    on disk measures nothing); a Hub download keeps its bars."""
    from datasets.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    if not local or are_progress_bars_disabled():
        yield
        return
    disable_progress_bars()
    try:
        yield
    finally:
        enable_progress_bars()


def _read(where: str, load, kind: str | None = None, local: bool = True):
    """``load()``, with any failure turned into one line that names the source."""
    try:
        with _no_dataset_bars(local):
            return load()
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - reading user data: any failure is about the data
        cause = _innermost(error)
        what = f"cannot be read as {kind}" if kind else "cannot be loaded"
        raise ConfigError(
            f"{where}: {what} ({type(cause).__name__}: {first_line(cause)})"
        ) from error


def _innermost(error: BaseException) -> BaseException:
    seen = {id(error)}
    while True:
        nxt = error.__cause__ or error.__context__
        if nxt is None or id(nxt) in seen:
            return error
        seen.add(id(nxt))
        error = nxt


def check_data_file(path: str, flag: str, builder: str) -> None:
    """Refuse an empty, binary, non-Parquet or non-UTF-8 data file, naming the line."""
    if os.path.getsize(path) == 0:
        raise ConfigError(f"--{flag} {path}: the file is empty")
    with open(path, "rb") as handle:
        head = handle.read(8192)
    if builder == "parquet":
        if not head.startswith(b"PAR1"):
            raise ConfigError(f"--{flag} {path}: not a Parquet file (it does not start with PAR1)")
        return
    if b"\x00" in head:
        raise ConfigError(
            f"--{flag} {path}: binary content, not {builder.upper()} text; give a "
            f"{builder.upper()} file"
        )
    rows = 0
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            rows += bool(line.strip())
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                stem, suffix = Path(path).stem, Path(path).suffix
                raise ConfigError(
                    f"--{flag} {path}: line {number} is not UTF-8 (byte 0x{line[error.start]:02x} "
                    f"at character {error.start + 1}); save the file as UTF-8, for example "
                    f"iconv -f latin1 -t utf-8 {path} > {stem}.utf8{suffix}"
                ) from None
    if builder == "csv" and rows < 2:
        raise ConfigError(f"--{flag} {path}: no rows; give a file with data")


def _check_same_columns(splits: dict, files: dict) -> None:
    if "validation" not in splits:
        return
    train, validation = set(splits["train"].column_names), set(splits["validation"].column_names)
    if train == validation:
        return
    (train_flag, train_path), (val_flag, val_path) = files["train"], files["validation"]
    parts = []
    if validation - train:
        parts.append(f"--{train_flag} {train_path} lacks {', '.join(sorted(validation - train))}")
    if train - validation:
        parts.append(f"--{val_flag} {val_path} lacks {', '.join(sorted(train - validation))}")
    raise ConfigError(
        f"the training and validation files need the same columns: {'; '.join(parts)}"
    )


def scan_class_folder(
    root: str, flag: str, extensions: frozenset[str], kind: str
) -> dict[str, int]:
    """Check that ``root`` is one sub-folder per class with the inputs (files with one of
    ``extensions``, e.g. images) directly inside, and return the number of inputs per class.

    Refused, with the file or folder named: no class folders, an empty class folder, an input
    outside the class folders or in a folder below one, a broken link. Other files are left out,
    with one log line listing them.
    """
    base = Path(root)
    counts: dict[str, int] = {}
    ignored: list[Path] = []

    def broken(path: Path) -> None:
        raise ConfigError(
            f"--{flag} {root}: {path} is a broken link (to {os.readlink(path)}); fix or remove it"
        )

    for entry in sorted(base.iterdir()):
        if entry.name.startswith("."):
            ignored.append(entry)
        elif entry.is_dir():
            counts[entry.name] = 0
            for folder, subfolders, names in os.walk(entry, followlinks=True):
                subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
                for name in sorted(names):
                    file = Path(folder) / name
                    if name.startswith(".") or file.suffix.lower() not in extensions:
                        if file.is_symlink() and not file.exists():
                            broken(file)
                        ignored.append(file)
                    elif not file.exists():
                        broken(file)
                    elif Path(folder) != entry:
                        raise ConfigError(
                            f"--{flag} {root}: {file} is in a folder below class folder "
                            f"'{entry.name}'; put each {kind} directly in its class folder "
                            f"({root}/<class>/<{kind}>)"
                        )
                    else:
                        counts[entry.name] += 1
        elif entry.is_symlink() and not entry.exists():
            broken(entry)
        elif entry.suffix.lower() in extensions:
            raise ConfigError(
                f"--{flag} {root}: {entry.name} is not in a class folder; put every {kind} in one "
                f"sub-folder per class ({root}/<class>/{entry.name})"
            )
        else:
            ignored.append(entry)
    if not counts:
        raise ConfigError(
            f"--{flag} {root}: no class folders; put the {kind}s in one sub-folder per class "
            f"({root}/cats/1.jpg, {root}/dogs/2.jpg, ...)"
        )
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        others = f" (also: {', '.join(empty[1:])})" if len(empty) > 1 else ""
        raise ConfigError(
            f"--{flag} {root}: class folder '{empty[0]}' has no {kind}s{others}; add {kind}s or "
            "remove the folder"
        )
    if ignored:
        logger.warning(
            "--%s %s: left out %d files that are not %ss (%s)",
            flag, root, len(ignored), kind, shown(p.relative_to(base) for p in ignored),
        )  # fmt: skip
    return counts


def _check_folder_read(dataset: DatasetDict, counts: dict, folders: dict) -> None:
    """What ``datasets`` read must be what the folders hold: every file, under its folder's class."""
    for split, expected in counts.items():
        data = dataset[split]
        if "label" not in data.features or not isinstance(data.features["label"], ClassLabel):
            raise ConfigError(
                f"--{folders[split][0]} {folders[split][1]}: no class labels were read"
            )
        names = data.features["label"].names
        found = Counter(names[i] for i in data["label"])
        if dict(found) != expected:
            raise ConfigError(
                f"--{folders[split][0]} {folders[split][1]}: datasets read {dict(found)} files per "
                f"class, the folders hold {expected}; please report this"
            )


def resolve_columns(dataset: DatasetDict, args: DataArguments, task, task_args) -> Columns:
    """Find the label column, then the task's input column among the others.

    Raises:
        ConfigError: a named column is missing, or the choice is ambiguous; the message lists the
            columns and the flag that settles it.
    """
    features = dataset["train"].features
    columns = list(features)
    label = pick_column(
        "label",
        args.label_column_name,
        columns,
        typed=[c for c in columns if isinstance(features[c], ClassLabel)],
        by_name=[c for c in LABEL_NAMES if c in columns],
    )
    others = [c for c in columns if c != label]
    return Columns(label=label, inputs=task.find_input_column(features, others, task_args))


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


def is_text(feature) -> bool:
    """A string column (text, or file paths)."""
    return isinstance(feature, Value) and feature.dtype in ("string", "large_string")


def check_file_exists(value: dict, split: str, index: int, kind: str) -> None:
    """A ``datasets`` file value ({'path', 'bytes'}) without bytes must name an existing file;
    else a one-line error naming the row and, for a relative path, the directory it was read
    from (the current one, as ``datasets`` reads paths in a CSV / JSON column)."""
    path = value.get("path") if isinstance(value, dict) else None
    if path is None or value.get("bytes") or os.path.isfile(path):
        return
    relative = "" if os.path.isabs(path) else (
        f" (a relative path is read from the current directory, {os.getcwd()})"
    )  # fmt: skip
    raise ConfigError(
        f"split '{split}': data row {index + 1}: no {kind} file {path}{relative}; fix the path or "
        "drop the row"
    )


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


def _existing_dir(path: str, flag: str) -> str:
    if not Path(path).is_dir():
        raise ConfigError(f"--{flag} {path}: no such directory")
    return path


def _existing_file(path: str, flag: str) -> str:
    if not Path(path).is_file():
        raise ConfigError(f"--{flag} {path}: no such file")
    return path
