"""Data for classification runs: where it comes from, what is checked, what the labels are.

Sources, with the Hugging Face example scripts' argument names (:mod:`hftl.data.arguments`):

* ``--dataset_name`` (+ ``--dataset_config_name``): a Hub dataset, or a local dataset directory;
* ``--train_dir`` / ``--validation_dir``: folders with one sub-folder per class, read with the
  task's folder builder (``imagefolder`` for images);
* ``--train_file`` / ``--validation_file``: CSV, JSON, JSON Lines or Parquet;
* with ``--do_predict``, the test split: ``--test_file``, ``--test_dir`` (class folders, or the
  inputs alone) or the dataset's ``--test_split_name``, with or without labels.

Everything read is checked where it is read, and a problem is a one-line
:class:`~hftl.errors.ConfigError` naming the file, folder, row, column or class: empty, binary or
non-UTF-8 files, files whose columns differ, image folders that are not one folder per class (an
empty class folder, images outside class folders or below them, broken links) (:mod:`.files`),
unreadable images, empty texts (the task's ``check_inputs``); the labels are read by the run's
label shape (:mod:`hftl.shapes`: missing labels, a single class, NaN targets, labels without a
training example, or, with ``--drop_unseen_validation_labels``, those dropped with a warning),
and a validation split too small to hold every class is refused (:mod:`.labels`). The modules:

* :mod:`.arguments`: :class:`DataArguments`;
* :mod:`.sources`: reading the splits (:func:`load_raw_datasets`);
* :mod:`.files`: checks of data files and class folders;
* :mod:`.columns`: the label and input columns;
* :mod:`.labels`: the labels (through the label shape) and the validation split.

:func:`hftl.run.load_classification_data` is the pipeline a run (and ``hftl advise``, and the
reference task) reads its data with.
"""

from hftl.data.arguments import FILE_BUILDERS, DataArguments
from hftl.data.columns import (
    Columns,
    check_test_columns,
    is_text,
    pick_column,
    resolve_columns,
)
from hftl.data.files import check_data_file, check_file_exists, scan_class_folder
from hftl.data.labels import ensure_validation_split, read_labels, split_test_labels
from hftl.data.sources import load_raw_datasets

__all__ = [
    "FILE_BUILDERS",
    "Columns",
    "DataArguments",
    "check_data_file",
    "check_test_columns",
    "check_file_exists",
    "ensure_validation_split",
    "is_text",
    "load_raw_datasets",
    "read_labels",
    "pick_column",
    "resolve_columns",
    "scan_class_folder",
    "split_test_labels",
]
