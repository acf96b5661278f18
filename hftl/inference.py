"""``hftl predict``: a trained classifier over new data, one row per input, in input order.

    hftl predict MODEL INPUT... [--output predictions.jsonl|.csv] [--input_column C]
                 [--batch_size 32] [--device auto|cpu|cuda] [--strict]

MODEL is a finished run's output directory, one of its checkpoints, or a Hub repository id. INPUT
is any number of image / audio files or folders of them (read recursively, sorted), CSV / JSON /
JSON Lines / Parquet files (the inputs in ``--input_column``: texts, or file paths), ``.txt``
files (one text per line), or a Hub dataset id (``--split``, ``--dataset_config_name``).

The model is loaded with its ``AutoModelFor...`` class and its own saved preprocessing (what
``pipeline()`` would load), with the run's own preprocessing options where the directory holds
its ``run_config.yaml`` (``max_seq_length``, the audio window, ...); a multi-label model applies
the thresholds saved in its ``config.json``, a regression model predicts in the data's units.
Nothing hftl-specific goes into the model: a plain transformers model from the Hub works too.

An input that cannot be read (a broken image, an empty text) gets a row with its ``error`` and
the job goes on; the end of the job lists them (``--strict`` stops at the first). Rows are written
as they are predicted, to ``<output>.partial`` until the last one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from hftl.data import FILE_BUILDERS
from hftl.errors import ConfigError, first_line
from hftl.models import checked_model_path, load_processor, read_config
from hftl.predictions import PredictionWriter, input_reference
from hftl.run_files import FINISHED_RUN, RUN_STARTED
from hftl.shapes import LabelSpec
from hftl.tasks import TASKS, file_value, task_for_config, task_of

logger = logging.getLogger(__name__)

TEXT_LINES = ".txt"  # one text per line
ONNX_DIR = "onnx"  # where hftl export writes the graph (hftl.export)


@dataclass
class PredictArguments:
    """``hftl predict``'s options."""

    model: str = field(metadata={"help": "A finished run's output directory, a checkpoint "
                                         "directory, or a Hub model id."})  # fmt: skip
    inputs: list[str] = field(metadata={"help": "Files, folders, data files or a Hub dataset."})
    output: str = field(default="predictions.jsonl",
                        metadata={"help": "Where the rows go: .jsonl or .csv."})  # fmt: skip
    input_column: str | None = field(
        default=None,
        metadata={"help": "The column of a data file or dataset holding the inputs (texts or "
                          "file paths; default: found as a run finds it)."},
    )  # fmt: skip
    batch_size: int = field(default=32, metadata={"help": "Inputs per forward pass."})
    device: str = field(default="auto", metadata={"help": "auto (a GPU where there is one), "
                                                          "cpu, cuda, cuda:1, ..."})  # fmt: skip
    strict: bool = field(default=False, metadata={"help": "Stop at the first unreadable input."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing --output."})
    task: str | None = field(default=None, metadata={"help": "The task, where the model's "
                                                             "config does not say it."})  # fmt: skip
    split: str = field(default="test", metadata={"help": "A Hub dataset's split."})
    dataset_config_name: str | None = field(default=None,
                                            metadata={"help": "A Hub dataset's configuration."})  # fmt: skip
    revision: str = field(default="main", metadata={"help": "The model's revision on the Hub."})
    token: str | None = field(default=None, metadata={"help": "Hub token (never printed)."})
    backend: str = field(default="pytorch", metadata={
        "help": "pytorch, or onnxruntime: the graph hftl export wrote (onnx/ in the run)."})  # fmt: skip
    onnx_file: str = field(default="model.onnx", metadata={
        "help": "--backend onnxruntime: model.onnx, or model_quantized.onnx (int8)."})  # fmt: skip
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run the model's own code (an hftl mean / max pooled text model "
                          "carries it); hftl's own pooled head loads without it."},
    )  # fmt: skip

    def __post_init__(self):
        if self.batch_size < 1:
            raise ConfigError(f"--batch_size {self.batch_size}: must be >= 1")
        if Path(self.output).suffix.lower() not in (".jsonl", ".csv"):
            raise ConfigError(f"--output {self.output}: give a .jsonl or .csv file")
        if Path(self.output).exists() and not self.overwrite:
            raise ConfigError(f"--output {self.output} exists; give a new path or --overwrite")


class Predictor:
    """A saved classifier with its preprocessing: ``predictor(values)`` -> one row per value
    (the label shape's record, :meth:`hftl.shapes.base.LabelShape.predictions`).

    ``values``: what the task reads (texts; ``{'path', 'bytes'}`` file values, or paths).
    """

    def __init__(self, model: str, *, task=None, device: str = "auto", revision: str = "main",
                 token: str | None = None, trust_remote_code: bool = False,
                 backend: str = "pytorch", onnx_file: str = "model.onnx"):  # fmt: skip
        from hftl.config import ModelArguments

        self.model_args = ModelArguments(model_name_or_path=model, revision=revision, token=token,
                                         trust_remote_code=trust_remote_code)  # fmt: skip
        path, config = read_config(self.model_args)
        self.name = model
        self.task = task_of(task) if task is not None else self._task_of(path, config)
        self.task_args = self._task_arguments(path)
        self.processor = load_processor(self.model_args, self.task)
        self.labels = LabelSpec.from_config(config)
        self.batch = self.task.batch_inputs(self.processor, self.task_args)
        self.session = self.model = None
        if backend == "onnxruntime":  # hftl export's graph, beside the run's files
            exported = Path(path) / ONNX_DIR / onnx_file
            if not exported.is_file():
                raise ConfigError(
                    f"{model}: no {ONNX_DIR}/{onnx_file}; export it first (hftl export {model} "
                    "--format onnx)"
                )
            self.session = OnnxPredictor(exported, self.batch)
            self.device = torch.device("cpu")
            return
        if backend != "pytorch":
            raise ConfigError(f"--backend {backend}: choose pytorch or onnxruntime")
        self.model = self._load_model(path, config)
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        )
        self.model.to(self.device).eval()

    def _task_of(self, path, config):
        run_info = Path(path) / FINISHED_RUN
        if run_info.is_file():
            return task_of(json.loads(run_info.read_text())["task"])
        task = task_for_config(config)
        if task is None:
            raise ConfigError(
                f"{self.name}: a '{config.model_type}' model whose task its config does not "
                f"say; give --task ({', '.join(TASKS.names())})"
            )
        return task

    def _task_arguments(self, path):
        """The run's own preprocessing options (its ``run_config.yaml``; a checkpoint's run is
        the folder above), else the task's defaults."""
        fields = {f.name for f in dataclasses.fields(self.task.arguments)}
        for folder in (Path(path), Path(path).parent):
            config = folder / RUN_STARTED
            if folder.is_dir() and config.is_file():
                values = yaml.safe_load(config.read_text()) or {}
                return self.task.arguments(**{k: v for k, v in values.items() if k in fields})
        return self.task.arguments()

    def _load_model(self, path, config):
        with _named_failure(self.name):
            model, loading = self.task.auto_model.from_pretrained(
                path, config=config, output_loading_info=True, revision=self.model_args.revision,
                token=self.model_args.token, trust_remote_code=self.model_args.trust_remote_code,
            )  # fmt: skip
        missing = loading.get("missing_keys") or []
        if missing:  # a model that would predict with random weights
            raise ConfigError(
                f"{self.name}: {len(missing)} of the model's tensors are not in the checkpoint "
                f"({', '.join(sorted(missing)[:3])}, ...); is it a fine-tuned classifier?"
            )
        return model

    @torch.inference_mode()
    def logits(self, values: list) -> np.ndarray:
        if self.session is not None:
            return self.session.logits(values)
        inputs = {k: v.to(self.device) for k, v in self.batch(values).items()}
        return self.model(**inputs).logits.float().cpu().numpy()

    def __call__(self, values: list) -> list[dict]:
        return self.labels.shape.predictions(self.labels, self.logits(values))


class OnnxPredictor:
    """An exported model (``hftl export``) in onnxruntime, fed by a :class:`Predictor`'s
    preprocessing (``batch``): ``logits(values)`` as a Predictor's."""

    def __init__(self, path: Path, batch):
        onnxruntime = import_onnxruntime()
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]
        self.batch = batch

    def logits(self, values: list) -> np.ndarray:
        inputs = self.batch(values)
        return self.session.run(["logits"], {n: inputs[n].numpy() for n in self.names})[0]


def import_onnxruntime():
    """onnxruntime, or a one-line error saying how to install it (``hftl[export]``)."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "the ONNX model needs onnx, onnxscript and onnxruntime: pip install 'hftl[export]'"
        ) from None
    return onnxruntime


class _named_failure:
    """Loading failures as one line naming the model."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is None or isinstance(error, ConfigError):
            return False
        raise ConfigError(
            f"{self.name}: cannot be loaded ({type(error).__name__}: {first_line(error)})"
        ) from error


def read_inputs(args: PredictArguments, task, task_args) -> list:
    """Every input, in order: (what it is, for the output, the value the task reads)."""
    values = []
    for source in args.inputs:
        path = Path(source).expanduser()
        if path.is_dir():
            values += _folder_inputs(path, task)
        elif path.suffix.lower() == TEXT_LINES and path.is_file():
            values += [(line, line) for line in path.read_text().splitlines() if line.strip()]
        elif path.suffix.lower() in FILE_BUILDERS and path.is_file():
            values += _table_inputs(str(path), FILE_BUILDERS[path.suffix.lower()], args, task,
                                    task_args)  # fmt: skip
        elif path.is_file():
            if task.folder_builder is None:
                raise ConfigError(
                    f"{source}: the {task.name} task reads texts; give a data file "
                    f"({', '.join(FILE_BUILDERS)}) or {TEXT_LINES} (one text per line)"
                )
            values.append((str(path), file_value(path)))
        elif os.path.exists(source) or source.startswith((".", "/", "~")):
            raise ConfigError(f"{source}: not a file or folder that hftl predict reads")
        else:  # a Hub dataset id
            values += _table_inputs(source, None, args, task, task_args)
    if not values:
        raise ConfigError(f"{' '.join(args.inputs)}: no inputs found")
    return values


def _folder_inputs(folder: Path, task) -> list:
    if task.folder_builder is None:
        raise ConfigError(f"{folder}: the {task.name} task reads texts, not folders of files")
    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in task.folder_extensions
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )  # fmt: skip
    if not files:
        raise ConfigError(
            f"{folder}: no {task.input_name}s ({', '.join(sorted(task.folder_extensions))})"
        )
    return [(str(p), file_value(p)) for p in files]


def _table_inputs(source: str, builder: str | None, args, task, task_args) -> list:
    from datasets import Audio, Image, load_dataset

    where = source if builder else f"{source} (split {args.split})"
    try:
        if builder:
            data = load_dataset(builder, data_files=source)["train"]
        else:
            data = load_dataset(source, args.dataset_config_name, split=args.split,
                                token=args.token)  # fmt: skip
    except Exception as error:  # noqa: BLE001 - reading user data: any failure is about it
        raise ConfigError(
            f"{where}: cannot be read ({type(error).__name__}: {first_line(error)})"
        ) from None
    columns = list(data.column_names)
    if args.input_column is not None:
        column = args.input_column
        if column not in columns:
            raise ConfigError(
                f"{where}: --input_column {column} is not a column; the columns are: "
                f"{', '.join(columns)}"
            )
    else:
        try:
            column = task.find_input_column(data.features, columns, task_args)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}; or name it with --input_column") from None
    feature = data.features[column]
    if isinstance(feature, (Image, Audio)):
        data = data.cast_column(column, type(feature)(decode=False))
    try:
        rows = task.input_values(data, column, task_args)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    return [(input_reference(v if not isinstance(v, tuple) else v[0]), v) for v in rows]


def predict(args: PredictArguments) -> dict:
    """Run ``hftl predict``: returns the summary (rows, failures, seconds, rows per second)."""
    from tqdm.auto import tqdm

    from hftl.assets import fetch_named, resolve

    fetch_named(*args.inputs)  # hftl: assets among the inputs, fetched once
    args = dataclasses.replace(args, inputs=[resolve(source) for source in args.inputs],
                               overwrite=True)  # checked when the arguments were made  # fmt: skip
    checked_model_path(args.model)
    predictor = Predictor(args.model, task=args.task, device=args.device, revision=args.revision,
                          token=args.token, trust_remote_code=args.trust_remote_code,
                          backend=args.backend, onnx_file=args.onnx_file)  # fmt: skip
    items = read_inputs(args, predictor.task, predictor.task_args)
    writer = PredictionWriter(Path(args.output), predictor.labels.names)
    failures: list[tuple[int, str, str]] = []
    start = time.perf_counter()
    bar = tqdm(total=len(items), unit="rows", desc="predicting", dynamic_ncols=True)
    try:
        for begin in range(0, len(items), args.batch_size):
            chunk = items[begin : begin + args.batch_size]
            for offset, result in enumerate(_predict_chunk(predictor, chunk, args.strict)):
                index = begin + offset
                reference = chunk[offset][0]
                if isinstance(result, str):
                    failures.append((index, reference, result))
                    writer.write(index, reference, {"prediction": "", "error": result})
                else:
                    writer.write(index, reference, result)
            bar.update(len(chunk))
    except BaseException:
        writer.abandon()
        raise
    finally:
        bar.close()
    writer.close()
    seconds = time.perf_counter() - start
    return {"rows": len(items), "failed": failures, "seconds": seconds,
            "rows_per_second": len(items) / seconds if seconds else None,
            "output": args.output, "device": str(predictor.device)}  # fmt: skip


def _predict_chunk(predictor: Predictor, chunk: list, strict: bool) -> list:
    """The rows of one batch; where an input cannot be read, the batch again one by one, each
    unreadable input's row its error (``strict``: the error is raised)."""
    values = [value for _, value in chunk]
    try:
        return predictor(values)
    except ConfigError:
        if strict:
            raise
    results = []
    for reference, value in chunk:
        try:
            results.append(predictor([value])[0])
        except ConfigError as error:
            results.append(f"{reference}: {error}" if reference not in str(error) else str(error))
    return results
