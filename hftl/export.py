"""``hftl export``: a finished run as an ONNX model to deploy, checked against PyTorch.

    hftl export RUN --format onnx [--quantize dynamic-int8] [--opset 18] [--check_samples 256]

writes into the run's directory

    onnx/model.onnx              the classifier's graph, inputs as the run's preprocessing makes
                                 them (batch and sequence lengths dynamic), output ``logits``
    onnx/model_quantized.onnx    --quantize dynamic-int8: weights in int8 (onnxruntime's dynamic
                                 quantization)
    onnx/config.json, the preprocessing files
                                 id2label, thresholds, and the tokenizer / image processor / feature
                                 extractor, so the folder is complete on its own

The exporter is ``torch.onnx.export`` (the dynamo exporter, TorchScript's where it fails): the HF
exporter, optimum-onnx, requires transformers < 4.58. The model is exported as saved: hftl's
pooled text head with its pooling inside the graph, a LoRA run's merged weights.

Each export checks itself on the run's validation split (read again as the run read it): the
largest difference between PyTorch's and onnxruntime's probabilities (values, for regression) must
be at most 1e-4 for fp32, and int8 must agree with PyTorch on at least 99% of the predicted labels;
a failed check removes what it checked and is an error. The check, the sizes and the versions go
into ``run_info.json`` (``export``) and the card, which shows how to run the model with
onnxruntime. ``hftl predict --backend onnxruntime`` runs it; ``hftl push`` uploads ``onnx/``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hftl.errors import ConfigError, first_line
from hftl.inference import ONNX_DIR, OnnxPredictor, Predictor, import_onnxruntime
from hftl.run import load_classification_data, parse_run_config
from hftl.run_files import FINISHED_RUN, RUN_STARTED
from hftl.storage import atomic_write_text

logger = logging.getLogger(__name__)

FP32_TOLERANCE = 1e-4
INT8_AGREEMENT = 0.99
QUANTIZATIONS = ("dynamic-int8",)


class LogitsOnly(nn.Module):
    """The classifier with one output, its logits (what the graph returns)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, **inputs):
        return self.model(**inputs).logits


def export_run(run_dir, *, quantize: str | None = None, opset: int = 18,
               check_samples: int = 256) -> dict:  # fmt: skip
    """Export a finished run (see the module docstring); returns what ``run_info.json`` records."""
    run = Path(run_dir)
    if not (run / FINISHED_RUN).is_file():
        raise ConfigError(f"{run}: not a finished hftl run (no {FINISHED_RUN}); export a run "
                          "that completed")  # fmt: skip
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"--quantize {quantize}: choose {', '.join(QUANTIZATIONS)}")
    if (run / "adapter_config.json").is_file():
        raise ConfigError(
            f"{run}: the run saved a LoRA adapter alone (--merge_lora false); export needs the "
            "merged weights: train with --merge_lora true (the default)"
        )
    onnxruntime = import_onnxruntime()
    predictor = Predictor(str(run), device="cpu")
    values = validation_inputs(run, predictor, check_samples)
    target = run / ONNX_DIR
    building = run / f".{ONNX_DIR}.partial"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    start = time.perf_counter()
    exporter = export_graph(predictor, values, building / "model.onnx", opset)
    record = {
        "format": "onnx", "opset": opset, "exporter": exporter,
        "export_seconds": round(time.perf_counter() - start, 1),
        "torch_version": torch.__version__, "onnxruntime_version": onnxruntime.__version__,
        "checked_on": f"{len(values)} validation examples",
        "pytorch_bytes": _weights_bytes(run),
    }  # fmt: skip
    reference = _logits(predictor, values)
    session = OnnxPredictor(building / "model.onnx", predictor.batch)
    fp32 = _check(session, values, reference, predictor.labels)
    record["fp32"] = {"file": f"{ONNX_DIR}/model.onnx",
                      "bytes": (building / "model.onnx").stat().st_size, **fp32}  # fmt: skip
    if fp32["max_abs_difference"] > FP32_TOLERANCE:
        shutil.rmtree(building)
        raise ConfigError(
            f"{run}: the ONNX model's outputs differ from PyTorch's by up to "
            f"{fp32['max_abs_difference']:.2e} (more than {FP32_TOLERANCE:g}); not exported "
            "(please report it with the model type)"
        )
    if quantize is not None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(building / "model.onnx"), str(building / "model_quantized.onnx"),
                         weight_type=QuantType.QInt8)  # fmt: skip
        session = OnnxPredictor(building / "model_quantized.onnx", predictor.batch)
        int8 = _check(session, values, reference, predictor.labels)
        record["int8"] = {"file": f"{ONNX_DIR}/model_quantized.onnx", "quantization": quantize,
                          "bytes": (building / "model_quantized.onnx").stat().st_size, **int8}  # fmt: skip
        if int8.get("label_agreement", 1.0) < INT8_AGREEMENT:
            shutil.rmtree(building)
            raise ConfigError(
                f"{run}: the int8 model agrees with PyTorch on {int8['label_agreement']:.1%} of "
                f"the validation labels (at least {INT8_AGREEMENT:.0%} needed); not exported: "
                "export without --quantize"
            )
    predictor.model.config.save_pretrained(building)
    predictor.processor.save_pretrained(building)
    shutil.rmtree(target, ignore_errors=True)
    building.rename(target)
    _record(run, record)
    return record


def validation_inputs(run: Path, predictor: Predictor, limit: int) -> list:
    """The first ``limit`` inputs of the run's validation split, read as the run read them."""
    config = run / RUN_STARTED
    if not config.is_file():
        raise ConfigError(f"{run}: no {RUN_STARTED}, so its validation split is unknown")
    model_args, data_args, task_args, training_args, _ = parse_run_config(
        predictor.task, ["--config", str(config), "--output_dir", str(run), "--report_to", "none"]
    )
    data_args.max_eval_samples = limit
    raw, columns, _ = load_classification_data(
        data_args, predictor.task, task_args, seed=training_args.seed,
        cache_dir=model_args.cache_dir, token=model_args.token,
    )  # fmt: skip
    return predictor.task.input_values(raw["validation"], columns.inputs, task_args)


def export_graph(predictor: Predictor, values: list, path: Path, opset: int = 18) -> str:
    """Write the graph of ``predictor``'s model to ``path`` (inputs shaped by its preprocessing of
    ``values``, batch and sequence lengths dynamic); returns which exporter wrote it."""
    example = predictor.batch(values[:2] if len(values) > 1 else values * 2)
    dynamic = {name: ({0: "batch", 1: "sequence"} if tensor.ndim == 2 else {0: "batch"})
               for name, tensor in example.items()}  # fmt: skip
    module = LogitsOnly(predictor.model).eval()
    errors = []
    for dynamo in (True, False):
        try:
            with torch.inference_mode():
                if dynamo:
                    torch.onnx.export(module, (), str(path), kwargs=dict(example), dynamo=True,
                                      dynamic_shapes=dynamic, opset_version=opset,
                                      output_names=["logits"], external_data=False)  # fmt: skip
                else:
                    names = list(example)
                    torch.onnx.export(
                        _Positional(module, names), tuple(example.values()), str(path),
                        dynamo=False, input_names=names, output_names=["logits"],
                        dynamic_axes={**dynamic, "logits": {0: "batch"}},
                        opset_version=min(opset, 17),
                    )  # fmt: skip
            return "torch.onnx.export (dynamo)" if dynamo else "torch.onnx.export (TorchScript)"
        except Exception as error:  # noqa: BLE001 - try the other exporter, then report both
            errors.append(f"{'dynamo' if dynamo else 'TorchScript'}: {first_line(error)}")
            logger.info("ONNX export (%s) failed: %s", "dynamo" if dynamo else "TorchScript",
                        first_line(error))  # fmt: skip
    raise ConfigError(f"{predictor.name}: cannot be exported to ONNX ({'; '.join(errors)})")


class _Positional(nn.Module):
    """The TorchScript exporter passes inputs by position."""

    def __init__(self, module: nn.Module, names: list[str]):
        super().__init__()
        self.module, self.names = module, names

    def forward(self, *tensors):
        return self.module(**dict(zip(self.names, tensors, strict=True)))


def _logits(backend, values, batch_size: int = 32) -> np.ndarray:
    return np.concatenate([backend.logits(values[begin : begin + batch_size])
                           for begin in range(0, len(values), batch_size)])  # fmt: skip


def _check(backend, values, reference: np.ndarray, labels) -> dict:
    """The largest difference in what the model reports (probabilities, values) against
    PyTorch's logits ``reference``, and, for labels, the share of rows predicted the same."""
    logits = _logits(backend, values)
    record = {"max_abs_difference": float(
        np.abs(labels.outputs(logits) - labels.outputs(reference)).max())}  # fmt: skip
    ours, theirs = (labels.shape.predictions(labels, x) for x in (logits, reference))
    key = next((k for k in ("label", "labels") if k in ours[0]), None)
    if key is not None:  # classes: the same label(s) predicted
        record["label_agreement"] = float(
            np.mean([a[key] == b[key] for a, b in zip(ours, theirs, strict=True)]))  # fmt: skip
    return record


def _weights_bytes(run: Path) -> int:
    return sum(p.stat().st_size for p in run.glob("*.safetensors"))


def _record(run: Path, record: dict) -> None:
    """Into ``run_info.json`` (``export``) and the card."""
    from hftl.cards import write_card

    info = json.loads((run / FINISHED_RUN).read_text())
    info["export"] = record
    atomic_write_text(run / FINISHED_RUN, json.dumps(info, indent=2))
    write_card(run)
