"""What a finished run leaves in its output directory.

    model.safetensors, config.json        the final model (id2label inside), loads with pipeline()
    tokenizer / preprocessor files        written by Trainer from processing_class
    adapter/                              strategy=lora with merge_lora: the adapter alone
    run_config.yaml                       the resolved configuration; `--config` accepts it
                                          (written when the run starts, again when it ends)
    eval_results.json, all_results.json   metrics of the final model on the validation split, as
                                          the Trainer computed them (multi-label: at 0.5)
    eval_report.json                      the label shape's report: accuracy, macro-F1, per-class
                                          scores (classes); micro / macro / samples F1, mAP,
                                          per-label scores, F1 at 0.5 and at the tuned thresholds
                                          (several labels); RMSE, MAE, R², Pearson, Spearman
                                          (numbers)
    confusion_matrix.json                 classes: rows = true label, columns = predicted label
    predict_results.txt, predictions.jsonl
                                          --do_predict: the test split's predictions, one row per
                                          example in its order (hftl.predictions); with labels,
                                          predict_results.json (the Trainer's metrics) and
                                          predict_report.json (the label shape's report)
    run_info.json                         what the model card needs: base model, data, strategy,
                                          LR and trainable state per depth, hardware, wall time;
                                          written last, atomically: its presence means "finished"
    trainer_state.json, train.log         the training log (log_history) and the text log

Only the main process writes; every process takes part in evaluation. What happens to an
output directory that already holds a run (refused, resumed, or replaced) is decided by
:func:`hftl.output_dir.prepare_output_dir`, through :func:`start_run`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

import transformers
import yaml

from hftl.families import family_of
from hftl.fast import mixed_precision
from hftl.feature_cache import unwrap
from hftl.logs import RunLog
from hftl.output_dir import prepare_output_dir
from hftl.predictions import PredictionWriter, input_reference, write_predict_results
from hftl.run_files import FINISHED_RUN, RUN_STARTED
from hftl.shapes import LabelSpec, first_output
from hftl.storage import atomic_write_text

logger = logging.getLogger(__name__)


@dataclass
class TestSplit:
    """``--do_predict``'s test split: ``dataset`` (prepared as the validation split is),
    ``inputs`` (what each row was: :func:`input_references`) and whether it has labels (an
    unlabelled split carries placeholder labels, never scored)."""

    dataset: object
    inputs: list
    labelled: bool


def input_references(values) -> list:
    """What each input of a split was (its file's path, or its text), for the predictions."""
    return [input_reference(value) for value in values]


@dataclass
class Run:
    """One recipe run: its argument objects, its task, the checkpoint it resumes from, its
    ``train.log``. :func:`start_run` makes it;
    :func:`finish_run` ends it; as a context manager it restores logging however the run ends."""

    arguments: tuple
    task: object
    resume: str | None = None
    log: RunLog | None = None

    def close(self) -> None:
        if self.log is not None:
            self.log.stop()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_run(argument_objects: tuple, task) -> Run:
    """Start a recipe's run: settle the output directory (refuse a finished run, or resume from its
    last complete checkpoint, see :func:`hftl.output_dir.prepare_output_dir`), write
    ``run_config.yaml`` and start ``train.log`` (main process).
    """
    training_args = next(
        a for a in argument_objects if isinstance(a, transformers.TrainingArguments)
    )
    resume = prepare_output_dir(training_args)
    log = None
    if training_args.should_save:
        output = Path(training_args.output_dir)
        output.mkdir(parents=True, exist_ok=True)
        write_resolved_config(output / RUN_STARTED, *argument_objects)
        log = RunLog(output)
    return Run(arguments=tuple(argument_objects), task=task, resume=resume, log=log)


def write_resolved_config(path: Path, *argument_objects) -> None:
    """One flat YAML of every option that ``parse_config`` would read back.

    ``TrainingArguments`` fields are written where they differ from the field defaults (there are
    over a hundred); tokens are never written. Nothing is instantiated here: building another
    ``TrainingArguments`` would reset Accelerate's process state in a running job.
    """
    resolved: dict = {}
    for arguments in argument_objects:
        values = (
            arguments.to_dict()
            if isinstance(arguments, transformers.TrainingArguments)
            else dataclasses.asdict(arguments)
        )
        if isinstance(arguments, transformers.TrainingArguments):
            defaults = _field_defaults(type(arguments))
            values = {
                k: v
                for k, v in values.items()
                if k in defaults and (v != defaults[k] or k in _ALWAYS_WRITTEN)
            }
        resolved.update(values)
    resolved = {
        k: v
        for k, v in resolved.items()
        if v is not None
        and v != []
        and v != {}
        and not k.endswith("_token")
        and not k.startswith("_")
    }
    path.write_text(
        "# The resolved configuration of this run; rerun it with --config this_file.\n"
        + yaml.safe_dump(resolved, sort_keys=False)
    )


_ALWAYS_WRITTEN = {"output_dir", "strategy", "learning_rate", "num_train_epochs", "seed"}


def _field_defaults(cls) -> dict:
    defaults = {}
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        if field.default is not dataclasses.MISSING:
            value = field.default
        elif field.default_factory is not dataclasses.MISSING:
            value = field.default_factory()
        else:
            continue
        defaults[field.name] = value.value if isinstance(value, Enum) else value
    return defaults


def finish_run(trainer, eval_dataset, labels: LabelSpec, run: Run,
               test: TestSplit | None = None) -> dict:  # fmt: skip
    """Evaluate the final model, save it and everything listed in the module docstring, write the
    model card, and push to the Hub when ``--push_to_hub`` was given (main process).

    ``test``: ``--do_predict``'s test split, predicted by the final model (see
    :func:`predict_test`).

    ``labels``: the run's :class:`~hftl.shapes.LabelSpec`. Its shape finishes the model before it
    is saved (multi-label: thresholds tuned on this evaluation; regression: the targets' scale
    written into the output layer) and reports the evaluation. The run's facts
    (``run_info.json``) are collected once, here, and the card and the push are made from them in
    memory.

    Returns the evaluation report (the shape's: accuracy, f1, ..., per_class,
    confusion_matrix for classes; micro / macro F1, mAP, per_label for several labels; RMSE, R²,
    per_target for numbers).
    """
    args = trainer.args
    output = Path(args.output_dir)
    prediction = trainer.predict(eval_dataset, metric_key_prefix="eval")
    logits = first_output(prediction.predictions)
    info = collect_run_info(trainer, labels, run, len(eval_dataset))  # before a LoRA merge
    final = unwrap(trainer.accelerator.unwrap_model(trainer.model))
    if trainer.reference is not None:  # the trained backbone under the reference task's head
        info["reference"] = trainer.reference.measure(final)
    labels.shape.settle(labels, logits, prediction.label_ids)  # e.g. tuned thresholds
    report = labels.report(logits, prediction.label_ids)
    labels.shape.finish_model(labels, final)  # e.g. the targets' scale into the output layer
    labels.configure(final.config)  # e.g. the tuned thresholds, saved in config.json
    info["label_shape"] = labels.record()
    if test is not None:  # the final model, as saved (thresholds, scale), before a LoRA merge
        info["test"] = predict_test(trainer, test, labels)
    _save_model(trainer)
    if trainer.is_world_process_zero():
        trainer.save_metrics("eval", prediction.metrics)
        trainer.save_state()
        if "confusion_matrix" in report:
            (output / "confusion_matrix.json").write_text(
                json.dumps(
                    {"labels": labels.names,
                     "rows_true_columns_predicted": report["confusion_matrix"]},
                    indent=2,
                )
            )  # fmt: skip
        (output / "eval_report.json").write_text(json.dumps(report, indent=2))
        write_resolved_config(output / RUN_STARTED, *run.arguments)
    logger.info("validation %s -> %s", labels.shape.summary_line(report), output)
    run.close()  # train.log is complete: the card and the push below do not change it
    if trainer.is_world_process_zero():
        from hftl.cards import run_record, write_card
        from hftl.hub import push_at_end

        record = run_record(output, info, report, trainer.state.log_history)
        repo_id = push_repo_id(trainer)
        write_card(output, repo_id, run=record)
        # Last on disk, after the card and its plots: its presence means the run finished (a
        # re-run into this directory is refused); a run stopped before it resumes and finishes.
        atomic_write_text(output / FINISHED_RUN, json.dumps(info, indent=2))
        if repo_id is not None:
            push_at_end(trainer, repo_id, info)
    return report


def predict_test(trainer, test: TestSplit, labels: LabelSpec) -> dict:
    """Predict the test split with the final model (every process takes its share of the rows;
    the Trainer gathers them in order) and write ``predict_results.txt`` and
    ``predictions.jsonl`` (main process); with labels, its metrics and report too. Returns what
    ``run_info.json`` records (rows, labelled, the summary line and main metrics)."""
    args = trainer.args
    output = Path(args.output_dir)
    dataset = test.dataset
    if trainer.cached_features is not None:  # the frozen backbone's features, cached
        dataset = trainer.cached_features.features(dataset)
    scoring = trainer.compute_metrics
    if not test.labelled:
        trainer.compute_metrics = None  # placeholder labels: nothing to score
    try:
        prediction = trainer.predict(dataset, metric_key_prefix="predict")
    finally:
        trainer.compute_metrics = scoring
    logits = first_output(prediction.predictions)
    if len(logits) != len(test.inputs):
        raise RuntimeError(
            f"--do_predict: {len(logits)} predictions for {len(test.inputs)} test rows"
        )
    rows = labels.shape.predictions(labels, logits)
    record = {"rows": len(rows), "labelled": test.labelled}
    report = labels.report(logits, prediction.label_ids) if test.labelled else None
    if report is not None:
        record["summary"] = labels.shape.summary_line(report)
        record["metrics"] = {m: report[m] for m in labels.shape.metric_names}
        logger.info("test %s", record["summary"])
    if trainer.is_world_process_zero():
        write_predict_results(output / "predict_results.txt", rows)
        writer = PredictionWriter(output / "predictions.jsonl", labels.names)
        for index, (reference, row) in enumerate(zip(test.inputs, rows, strict=True)):
            writer.write(index, reference, row)
        writer.close()
        if report is not None:
            metrics = {**prediction.metrics, "predict_samples": len(rows)}
            trainer.save_metrics("predict", metrics)
            (output / "predict_report.json").write_text(json.dumps(report, indent=2))
    logger.info("test: %d rows predicted -> %s", len(rows), output / "predictions.jsonl")
    return record


def push_repo_id(trainer) -> str | None:
    """The repository ``--push_to_hub`` pushes to (None without ``--push_to_hub``)."""
    args = trainer.args
    if not args.push_to_hub:
        return None
    return trainer.hub_model_id or args.hub_model_id or Path(args.output_dir).resolve().name


def _save_model(trainer) -> None:
    # _internal_call: with --push_to_hub, Trainer would push here with its own card; hftl pushes
    # once at the end (hftl.hub.push_run) with the card made from this run.
    args = trainer.args
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not hasattr(model, "peft_config"):
        trainer.save_model(args.output_dir, _internal_call=True)
    elif not args.merge_lora:
        trainer.save_model(args.output_dir, _internal_call=True)  # adapter + processor
    else:
        trainer.save_model(str(Path(args.output_dir) / "adapter"), _internal_call=True)
        model = model.merge_and_unload()
        if trainer.is_world_process_zero():
            model.save_pretrained(args.output_dir)
            if trainer.processing_class is not None:
                trainer.processing_class.save_pretrained(args.output_dir)
    if trainer.is_world_process_zero():
        family_of(model).after_save(Path(args.output_dir))  # e.g. timm's own tensor names


def collect_run_info(trainer, labels: LabelSpec, run: Run, num_eval: int) -> dict:
    """Facts about the finished run that the saved files alone do not hold (for the model card)."""
    import platform

    import torch
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    from hftl.assets import asset_of
    from hftl.version import __version__

    args = trainer.args
    model_args = next((a for a in run.arguments if hasattr(a, "model_name_or_path")), None)
    data_args = next((a for a in run.arguments if hasattr(a, "train_file")), None)
    trained = trainer.accelerator.unwrap_model(trainer.model)  # the head on features, or the model
    model = unwrap(trained)
    config = model.config
    family = family_of(model)

    base = model_args.model_name_or_path if model_args else getattr(config, "_name_or_path", None)
    base_asset = asset_of(base)
    data_source = None
    if data_args is not None:
        data_source = data_args.dataset_name or data_args.train_file or data_args.train_dir
    data_asset = asset_of(data_source)

    layer_map = trainer.layer_map  # names as the trained module spells them
    initial_lr: dict[int, float] = {}  # the peak LR of each depth (before the schedule)
    for group in getattr(trainer.optimizer, "param_groups", []):
        if "depth" in group:
            initial_lr[group["depth"]] = max(
                initial_lr.get(group["depth"], 0.0), group.get("initial_lr", group["lr"])
            )
    by_depth: dict[int, list] = {}
    for name, param in trained.named_parameters():
        by_depth.setdefault(layer_map.depths[name], []).append(param)
    layers = []
    for depth in sorted(by_depth):
        params = by_depth[depth]
        name = "embeddings / stem" if depth == 0 else f"block {depth}"
        if depth == layer_map.head_depth:
            name = "head"
        trained_params = sum(p.numel() for p in params if p.requires_grad)
        layers.append(
            {
                "depth": depth,
                "name": name,
                "params": sum(p.numel() for p in params),
                "trainable_params": trained_params,
                "lr": initial_lr.get(depth) if trained_params else None,
            }
        )
    last = next((e for e in reversed(trainer.state.log_history) if "train_runtime" in e), {})
    if torch.cuda.is_available():
        device = f"{torch.cuda.get_device_name(0)} (CUDA)"
    else:
        device = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    strategy = args.strategy_object
    training = {
        "strategy": args.strategy,
        **strategy.run_info(args, model),
        "guards": [guard.name for guard in trainer.guards],
        "layer_decay": args.layer_decay,
        "layer_grouping": layer_map.grouping,
        "head_lr_multiplier": args.head_lr_multiplier,
        "learning_rate": args.learning_rate,
        "weight_decay": args.weight_decay,
        **{k: v for guard in trainer.guards for k, v in guard.run_info(args).items()},
        "optimizer": str(getattr(args.optim, "value", args.optim)),
        "lr_scheduler": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        "warmup_steps": args.warmup_steps,
        "epochs": args.num_train_epochs,
        "epochs_run": round(trainer.state.epoch or 0, 2),
        "steps": trainer.state.global_step,
        "per_device_batch_size": args.per_device_train_batch_size,
        "total_batch_size": args.per_device_train_batch_size
        * args.gradient_accumulation_steps
        * args.world_size,
        "world_size": args.world_size,
        "mixed_precision": mixed_precision(args),
        "seed": args.seed,
        "train_runtime_s": last.get("train_runtime"),
        "feature_cache": getattr(trainer, "feature_cache", None),
    }
    return {
        "hftl_version": __version__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "task": run.task.pipeline_tag,
        "model_type": getattr(config, "model_type", None),
        # a model type transformers does not know: the saved model carries its code
        "custom_code": getattr(config, "model_type", None) not in CONFIG_MAPPING_NAMES,
        "family": family.name,
        **family.run_facts(config),
        "head": run.task.describe_model(model),
        "labels": list(labels.names),
        "label_shape": labels.record(),
        "base_model": {
            "name_or_path": base,
            "hub_id": base_asset.hub_id if base_asset else _hub_id_or_none(base),
            "license": base_asset.spdx if base_asset else None,
            "source": base_asset.source if base_asset else None,
            "from_scratch": bool(getattr(model_args, "from_scratch", False)),
        },
        "data": {
            "name_or_path": data_source,
            "config": getattr(data_args, "dataset_config_name", None),
            "hub_id": data_asset.hub_id
            if data_asset
            else _hub_id_or_none(data_args and data_args.dataset_name),
            "license": data_asset.license if data_asset else None,
            "source": data_asset.source if data_asset else None,
            "language": data_asset.language if data_asset else None,
            "eval_split": _eval_split(data_args),
            "num_train": len(trainer.train_dataset) if trainer.train_dataset is not None else None,
            "num_eval": num_eval,
        },
        "training": training,
        "layers": layers,
        "params": {
            "total": sum(p.numel() for p in model.parameters()),
            "trainable_at_end": sum(p.numel() for p in model.parameters() if p.requires_grad),
        },
        "hardware": {"device": device, "processes": args.world_size},
    }


def describe_hardware() -> str:
    """``x86_64, 2 x <CPU model>, 2 torch threads, no GPU`` (or the GPU's name), for reports."""
    import platform

    import torch

    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = f"{len(names)} x {names[0]}" if names else cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {cpu}, {torch.get_num_threads()} torch threads, {gpu}"


def _hub_id_or_none(value) -> str | None:
    """``org/name`` ids are Hub ids; local paths (existing, absolute, or ./...) are not."""
    if not value or not isinstance(value, str) or value.startswith(("/", ".", "~")):
        return None
    if Path(value).exists() or value.count("/") > 1:
        return None
    return value


def _eval_split(data_args) -> str:
    if data_args is None:
        return "validation"
    if data_args.validation_file or data_args.validation_dir:
        return Path(data_args.validation_file or data_args.validation_dir).name
    if data_args.dataset_name and data_args.eval_split_name != "validation":
        return data_args.eval_split_name
    if data_args.dataset_name:
        return "validation (or the dataset's test split where it has no validation split)"
    return f"{data_args.validation_split_percentage}% of the training data, held out (stratified)"
