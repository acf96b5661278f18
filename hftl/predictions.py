"""Predictions as files: one row per input, in input order.

Both ``--do_predict`` (a run's test split) and ``hftl predict`` (new data) write them:

    predictions.jsonl       {"index", "input", then the label shape's own keys: "label" and
                            "score" (one class), "labels" (several), "value" / "values"
                            (numbers), and "scores" (every label's probability)}
    predictions.csv         index, input, prediction, then one column per label (its probability)
                            or target (its value)
    predict_results.txt     ``index<TAB>prediction``, as the HF example scripts write it

A row is made by the label shape (:meth:`hftl.shapes.base.LabelShape.predictions`); ``input`` is
what the row was: its file's path, or its text. Files are written whole or not at all: rows go
to ``<name>.partial`` first, renamed when the last is written.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from hftl.storage import atomic_write_text, fsync_dir

FORMATS = (".jsonl", ".csv")


def input_reference(value):
    """What an input was, for a predictions file: a file's path (``datasets``' undecoded
    ``{'path', 'bytes'}``), a text as it is, None for an input held in memory only."""
    if isinstance(value, dict):
        return value.get("path")
    if isinstance(value, str):
        return value
    return None


class PredictionWriter:
    """Writes rows to ``path`` (``.jsonl`` or ``.csv``) as they come, to ``<path>.partial`` until
    :meth:`close` renames it: a stopped job leaves no file that looks complete.

    ``columns``: the CSV's score columns (the label or target names).
    """

    def __init__(self, path: Path, columns: list[str]):
        self.path = Path(path)
        if self.path.suffix.lower() not in FORMATS:
            raise ValueError(f"{path}: write predictions as {' or '.join(FORMATS)}")
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.partial, "w", newline="")  # noqa: SIM115 - closed by close()
        self.columns = list(columns)
        self.csv = None
        if self.path.suffix.lower() == ".csv":
            self.csv = csv.writer(self.handle)
            self.csv.writerow(["index", "input", "prediction", *self.columns])

    def write(self, index: int, reference, row: dict) -> None:
        if self.csv is None:
            record = {"index": index, "input": reference}
            record.update((k, v) for k, v in row.items() if k != "prediction")
            self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            numbers = row.get("scores") or row.get("values") or {self.columns[0]: row.get("value")}
            self.csv.writerow(
                [index, reference, row["prediction"], *(numbers.get(c) for c in self.columns)]
            )

    def close(self) -> None:
        """Flush, sync and rename ``<path>.partial`` to ``path``."""
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.partial, self.path)
        fsync_dir(self.path.parent)

    def abandon(self) -> None:
        """Close without renaming: ``<path>.partial`` stays, holding the rows written."""
        self.handle.close()


def write_predict_results(path: Path, rows: list[dict]) -> None:
    """``predict_results.txt`` as run_glue.py / run_classification.py write it: a header, then
    ``index<TAB>prediction`` per row (a class name, a list of names, or a value to 3 decimals)."""
    lines = ["index\tprediction"] + [f"{i}\t{row['prediction']}" for i, row in enumerate(rows)]
    atomic_write_text(Path(path), "\n".join(lines) + "\n")
