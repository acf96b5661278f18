"""What a finished run leaves in its output directory.

    model.safetensors, config.json        the final model (id2label inside), loads with pipeline()
    tokenizer / preprocessor files        written by Trainer from processing_class
    adapter/                              strategy=lora with merge_lora: the adapter alone
    run_config.yaml                       the resolved configuration; `--config` accepts it
    eval_results.json, all_results.json   metrics of the final model on the validation split
    confusion_matrix.json                 rows = true label, columns = predicted label
    trainer_state.json, train.log         the training log (log_history) and the text log

Only the main process writes; every process takes part in evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from enum import Enum
from pathlib import Path

import transformers
import yaml

from hftl.metrics import classification_report

logger = logging.getLogger(__name__)


def start_log_file(training_args) -> None:
    """Mirror hftl's and transformers' log lines into ``output_dir/train.log`` (main process)."""
    if not training_args.should_save:
        return
    path = Path(training_args.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logging.getLogger("hftl").addHandler(handler)
    hf_logger = logging.getLogger("transformers")
    for console in hf_logger.handlers:  # the console keeps showing warnings only
        console.setLevel(max(console.level, logging.WARNING))
    hf_logger.addHandler(handler)
    transformers.utils.logging.set_verbosity_info()


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


def finish_run(trainer, eval_dataset, labels: list[str], argument_objects: tuple) -> dict:
    """Evaluate the final model, save it and everything listed in the module docstring.

    Returns the evaluation report (accuracy, f1, precision, recall, per_class, confusion_matrix).
    """
    args = trainer.args
    output = Path(args.output_dir)
    prediction = trainer.predict(eval_dataset, metric_key_prefix="eval")
    report = classification_report(prediction.predictions.argmax(-1), prediction.label_ids, labels)
    _save_model(trainer)
    if trainer.is_world_process_zero():
        trainer.save_metrics("eval", prediction.metrics)
        trainer.save_state()
        (output / "confusion_matrix.json").write_text(
            json.dumps(
                {"labels": labels, "rows_true_columns_predicted": report["confusion_matrix"]},
                indent=2,
            )
        )
        (output / "eval_report.json").write_text(json.dumps(report, indent=2))
        write_resolved_config(output / "run_config.yaml", *argument_objects)
    return report


def _save_model(trainer) -> None:
    args = trainer.args
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not hasattr(model, "peft_config"):
        trainer.save_model(args.output_dir)
        return
    if not args.merge_lora:
        trainer.save_model(args.output_dir)  # adapter + processor
        return
    trainer.save_model(str(Path(args.output_dir) / "adapter"))
    merged = model.merge_and_unload()
    if trainer.is_world_process_zero():
        merged.save_pretrained(args.output_dir)
        if trainer.processing_class is not None:
            trainer.processing_class.save_pretrained(args.output_dir)
