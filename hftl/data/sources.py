"""Reading the splits a run's data options point at (``--dataset_name``, ``--train_dir``,
``--train_file``), each read checked (:mod:`hftl.data.files`) and any failure one line naming the
source."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from datasets import DatasetDict, load_dataset

from hftl.data.arguments import FILE_BUILDERS, DataArguments
from hftl.data.files import (
    check_data_file,
    check_folder_read,
    check_same_columns,
    existing_dir,
    existing_file,
    scan_class_folder,
)
from hftl.errors import ConfigError, first_line, shown

logger = logging.getLogger(__name__)


def _with_assets_resolved(args: DataArguments) -> DataArguments:
    from dataclasses import replace

    from hftl.assets import resolve

    names = ("dataset_name", "train_dir", "validation_dir", "train_file", "validation_file",
             "test_file", "test_dir")  # fmt: skip
    return replace(args, **{name: resolve(getattr(args, name)) for name in names})


def load_raw_datasets(
    args: DataArguments, task, cache_dir: str | None = None, token: str | None = None,
    predict: bool = False,
) -> DatasetDict:  # fmt: skip
    """Load the splits the arguments point at (at least ``train``; with ``predict``, ``test``).

    Paths may name hftl's offline assets, e.g. ``--train_dir hftl:mnist/train`` (fetched on first
    use, see :mod:`hftl.assets`). ``--train_dir`` is read with the task's folder builder
    (``imagefolder`` for images).

    ``predict`` (``--do_predict``): the test split is ``--test_file``, ``--test_dir`` or the
    dataset's ``--test_split_name``, read now with the others, so that a problem with it stops the
    run before training. It may lack the label column (a flat ``--test_dir``: no labels).
    """
    args = _with_assets_resolved(args)
    dataset = _train_and_validation(args, task, cache_dir, token, predict)
    if predict and "test" not in dataset:
        if not args.test_source:
            raise ConfigError(
                "--do_predict: nothing to predict; give --test_file, --test_dir, or a "
                "--dataset_name with a test split"
            )
        dataset["test"] = _test_split(args, task, cache_dir)
    if predict and args.max_predict_samples is not None:
        test = dataset["test"]
        dataset["test"] = test.select(range(min(args.max_predict_samples, len(test))))
    return dataset


def _test_split(args: DataArguments, task, cache_dir):
    """``--test_file`` (any of the data formats) or ``--test_dir`` (class folders, or the inputs
    directly in it), checked like the training data."""
    if args.test_file:
        return _read_data_file("test_file", existing_file(args.test_file, "test_file"), cache_dir)
    path = existing_dir(args.test_dir, "test_dir")
    if task.folder_builder is None:
        raise ConfigError(
            f"--test_dir {path}: the {task.name} task reads no folders; give --test_file"
        )
    extensions = task.folder_extensions
    flat = [p for p in Path(path).iterdir() if p.is_file() and p.suffix.lower() in extensions]
    if flat:  # the inputs themselves: predicted without labels
        subfolders = [p.name for p in Path(path).iterdir() if p.is_dir()]
        if subfolders:
            raise ConfigError(
                f"--test_dir {path}: holds {task.input_name}s and folders ({shown(subfolders)}); "
                f"give class folders (scored) or only {task.input_name}s (predicted)"
            )
        return _read(
            f"--test_dir {path}",
            lambda: load_dataset(
                task.folder_builder, data_dir=path, cache_dir=cache_dir, drop_labels=True
            )["train"],
        )
    return _read_class_folders({"test": ("test_dir", path)}, task, cache_dir)["test"]


def _read_data_file(flag: str, path: str, cache_dir):
    """One CSV / JSON / JSON Lines / Parquet file as a dataset, checked (an empty, binary or
    non-UTF-8 file, no rows: one line naming it)."""
    builder = FILE_BUILDERS[Path(path).suffix.lower()]
    check_data_file(path, flag, builder)
    data = _read(
        f"--{flag} {path}",
        lambda: load_dataset(builder, data_files=path, cache_dir=cache_dir)["train"],
        kind=builder.upper(),
    )
    if len(data) == 0:
        raise ConfigError(f"--{flag} {path}: no rows; give a file with data")
    return data


def _read_class_folders(folders: dict, task, cache_dir) -> DatasetDict:
    """Class folders (split -> (flag, folder)) read with the task's folder builder, one split
    each, checked before (:func:`scan_class_folder`) and after (every file, under its class)."""
    counts = {
        split: scan_class_folder(path, flag, task.folder_extensions, task.input_name)
        for split, (flag, path) in folders.items()
    }
    data_files = {split: os.path.join(path, "**") for split, (_, path) in folders.items()}
    dataset = _read(
        " and ".join(f"--{flag} {path}" for flag, path in folders.values()),
        # drop_labels=False: every file's label is its folder's name (the folders are checked
        # above). datasets' default infers labels only where every file of every split lies at
        # the same depth and there are two classes at least: a --validation_dir elsewhere than
        # --train_dir, or one training class, would be read without labels.
        lambda: load_dataset(
            task.folder_builder, data_files=data_files, cache_dir=cache_dir, drop_labels=False
        ),
    )
    check_folder_read(dataset, counts, folders)
    return dataset


def _train_and_validation(args: DataArguments, task, cache_dir, token, predict) -> DatasetDict:
    if args.dataset_name:
        dataset = _read(
            f"--dataset_name {args.dataset_name}",
            lambda: load_dataset(
                args.dataset_name, args.dataset_config_name, cache_dir=cache_dir, token=token
            ),
            local=Path(args.dataset_name).expanduser().exists(),
        )
        return _named_splits(dataset, args, predict and not args.test_source)
    if args.train_dir:
        if task.folder_builder is None:
            raise ConfigError(
                f"--train_dir {args.train_dir}: the {task.name} task reads no class folders; give "
                "--train_file or --dataset_name"
            )
        folders = {"train": ("train_dir", existing_dir(args.train_dir, "train_dir"))}
        if args.validation_dir:
            folders["validation"] = (
                "validation_dir",
                existing_dir(args.validation_dir, "validation_dir"),
            )
        return _read_class_folders(folders, task, cache_dir)
    if args.train_file:
        files = {"train": ("train_file", existing_file(args.train_file, "train_file"))}
        if args.validation_file:
            files["validation"] = (
                "validation_file",
                existing_file(args.validation_file, "validation_file"),
            )
        builders = {FILE_BUILDERS[Path(p).suffix.lower()] for _, p in files.values()}
        if len(builders) > 1:
            raise ConfigError("train_file and validation_file must have the same format")
        splits = {
            split: _read_data_file(flag, path, cache_dir) for split, (flag, path) in files.items()
        }
        check_same_columns(splits, files)
        return DatasetDict(splits)
    raise ConfigError("no data: give --dataset_name, --train_dir or --train_file")


def _named_splits(dataset: DatasetDict, args: DataArguments, predict: bool) -> DatasetDict:
    """``train`` and ``validation`` from the splits the arguments name (where the dataset has no
    validation split, its ``test`` split, the usual fallback, unless it is predicted), with
    ``predict`` the ``test`` split too, and no others; a named split the dataset lacks is an error
    listing the ones it has."""
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
    if predict and args.test_split_name not in dataset:
        raise ConfigError(
            f"--do_predict: {where} has no split '{args.test_split_name}' (it has "
            f"{', '.join(dataset)}); name one with --test_split_name, or give --test_file"
        )
    test = args.test_split_name if predict else None
    if test is not None and test in (args.train_split_name, args.eval_split_name):
        raise ConfigError(
            f"--do_predict: --test_split_name {test} is also the split the run "
            f"{'trains' if test == args.train_split_name else 'evaluates'} on; predict another "
            "split"
        )
    splits = {"train": dataset[args.train_split_name]}
    if args.eval_split_name in dataset:
        splits["validation"] = dataset[args.eval_split_name]
    elif "test" in dataset and test != "test":  # the usual fallback
        logger.info("no 'validation' split: evaluating on the dataset's 'test' split")
        splits["validation"] = dataset["test"]
    if test is not None:
        splits["test"] = dataset[test]
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
