"""Checks of what a user's data files and folders hold, each a one-line error naming the file,
line or folder: empty, binary or non-UTF-8 files, files whose columns differ, class folders that
are not one folder per class, broken links, missing files named in a column."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

from datasets import ClassLabel, DatasetDict

from hftl.errors import ConfigError, shown

logger = logging.getLogger(__name__)


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


def check_same_columns(splits: dict, files: dict) -> None:
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


def check_folder_read(dataset: DatasetDict, counts: dict, folders: dict) -> None:
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


def existing_dir(path: str, flag: str) -> str:
    if not Path(path).is_dir():
        raise ConfigError(f"--{flag} {path}: no such directory")
    return path


def existing_file(path: str, flag: str) -> str:
    if not Path(path).is_file():
        raise ConfigError(f"--{flag} {path}: no such file")
    return path
