"""The data options of a run, with the Hugging Face example scripts' names."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hftl.shapes import LabelArguments

FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclass
class DataArguments(LabelArguments):
    """Where the data comes from and how it is read (with the label options of
    :class:`~hftl.shapes.LabelArguments`)."""

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
    test_file: str | None = field(
        default=None,
        metadata={
            "help": "--do_predict: a file of examples to predict after training (same format as "
            "--train_file; the label column may be left out)."
        },
    )
    test_dir: str | None = field(
        default=None,
        metadata={
            "help": "--do_predict: a folder to predict after training: one sub-folder per class "
            "(scored), or the files directly in it (no labels)."
        },
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
    test_split_name: str = field(
        default="test",
        metadata={
            "help": "--dataset_name with --do_predict: the split predicted after training (never "
            "used for validation then)."
        },
    )
    label_column_name: str | None = field(
        default=None,
        metadata={
            "help": "Label column (auto-detected); several, comma-separated, for one 0/1 column "
            "per label (multi-label) or one column per target (regression)."
        },
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
    max_predict_samples: int | None = field(
        default=None, metadata={"help": "--do_predict: predict the first N test examples."}
    )
    drop_unseen_validation_labels: bool = field(
        default=False,
        metadata={
            "help": "Validation rows whose class never occurs in training: false (default) stops "
            "with an error naming the class; true drops those rows, with a warning."
        },
    )

    @property
    def test_source(self) -> str | None:
        """The flag and value of a test source given as a file or folder (None otherwise)."""
        if self.test_file:
            return f"--test_file {self.test_file}"
        if self.test_dir:
            return f"--test_dir {self.test_dir}"
        return None

    def __post_init__(self):
        super().__post_init__()
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
        for name in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} {value}: must be >= 1")
        if self.test_file and self.test_dir:
            raise ValueError(
                f"give --test_file or --test_dir, not both ({self.test_file}, {self.test_dir})"
            )
        for name in ("train_file", "validation_file", "test_file"):
            path = getattr(self, name)
            if path and Path(path).suffix.lower() not in FILE_BUILDERS:
                raise ValueError(
                    f"{name}={path}: unsupported extension; use one of {', '.join(FILE_BUILDERS)}"
                )
