"""The command lines of transformers' example scripts, taken as they are.

Users arrive with a ``run_image_classification.py``, ``run_classification.py``, ``run_glue.py`` or
``run_audio_classification.py`` command. Most of its flags are hftl's own under the same name
(``--model_name_or_path``, ``--dataset_name``, ``--train_dir``, ``--train_file``, ``--max_train_samples``,
``--max_seq_length``, ``--pad_to_max_length``, ``--config_name``, ``--token``,
``--ignore_mismatched_sizes``, ``--trust_remote_code``, ``--image_column_name``,
``--label_column_name``, ``--audio_column_name``, ``--max_length_seconds``,
``--freeze_feature_encoder``, ``--attention_mask``, ``--train_split_name`` /
``--eval_split_name``, ``--do_predict`` with ``--test_file`` / ``--max_predict_samples``
(``predict_results.txt`` as they write it), every ``TrainingArguments`` flag). run_glue.py's ``--task_name`` becomes the ``nyu-mll/glue``
configuration with its column(s), a pair encoded together. :class:`ExampleScriptArguments` holds
the others: each is mapped onto its hftl equivalent, or, where it has no meaning here, gets one
line saying so (never a silent difference), or, where hftl cannot do what it asks, a one-line
error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields

from hftl.errors import ConfigError
from hftl.shapes import AUTO, SHAPES

logger = logging.getLogger(__name__)

# run_glue.py's tasks: (first text, second text or None) columns of nyu-mll/glue, and the
# evaluation split where it is not "validation"
GLUE_TASKS = {
    "cola": ("sentence", None), "sst2": ("sentence", None), "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"), "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"), "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"), "stsb": ("sentence1", "sentence2"),
}  # fmt: skip
GLUE_REGRESSION = {"stsb"}  # a similarity score from 0 to 5: regression
GLUE_EVAL_SPLITS = {"mnli": "validation_matched"}
GLUE_DATASET = "nyu-mll/glue"

# Metrics a run reports (eval_report.json, every label shape's); run_classification.py's
# --metric_name picks one.
REPORTED_METRICS = tuple(dict.fromkeys(m for shape in SHAPES for m in shape.metric_names))


def _flag(help_text: str, default=None):
    return field(default=default, metadata={"help": f"(as in the HF example scripts) {help_text}"})


# The help of a flag that changes nothing here; the rest of the help is the line a run prints.
NO_EFFECT = "(as in the HF example scripts) No effect here: "


def _no_effect(why: str, default=None):
    return field(default=default, metadata={"help": NO_EFFECT + why})


@dataclass
class ExampleScriptArguments:
    """Flags of the HF example scripts that hftl spells otherwise or has no use for."""

    model_revision: str | None = _flag("= --revision.")
    image_processor_name: str | None = _flag("= --processor_name.")
    feature_extractor_name: str | None = _flag("= --processor_name.")
    tokenizer_name: str | None = _flag("= --processor_name.")
    train_val_split: float | None = _flag(
        "Fraction of train held out when there is no validation split "
        "(= --validation_split_percentage x 100)."
    )
    metric_name: str | None = _flag(
        f"One of {', '.join(REPORTED_METRICS)} (all of the label shape's are reported): the "
        "metric_for_best_model where that is not given."
    )
    task_name: str | None = _flag(
        f"A GLUE task ({', '.join(GLUE_TASKS)}): --dataset_name {GLUE_DATASET} "
        "--dataset_config_name TASK with its text column(s) (pairs encoded together) and, for "
        "mnli, --eval_split_name validation_matched; stsb with --problem_type regression."
    )
    warmup_ratio: float | None = _flag(
        "= --warmup_steps as a fraction of all steps (transformers 5 reads a --warmup_steps "
        "below 1 so)."
    )
    freeze_feature_extractor: bool | None = _flag(
        "= --freeze_feature_encoder (its older name in run_audio_classification.py)."
    )
    do_regression: bool = _flag("= --problem_type regression.", False)
    shuffle_train_dataset: bool = _no_effect(
        "the Trainer shuffles the training data every epoch, seeded", False
    )
    shuffle_seed: int | None = _no_effect("the data order is seeded by --seed")
    remove_splits: str | None = _no_effect("only the train and validation splits are read")
    remove_columns: str | None = _no_effect("only the input and label columns are read")
    preprocessing_num_workers: int | None = _no_effect("tokenization runs in one process")
    overwrite_cache: bool = _no_effect(
        "datasets' cache is keyed by its inputs; a change is recomputed", False
    )
    use_fast_tokenizer: bool | None = _no_effect("the checkpoint's own tokenizer is used")
    model_type: str | None = _no_effect(
        "--from_scratch true trains the model's architecture from random weights"
    )


def apply_example_flags(example, model_args, data_args, task_args, training_args) -> None:
    """Put the example-script flags that were given onto hftl's arguments (in place)."""

    def set_once(target, name: str, value, flag: str) -> None:
        current = getattr(target, name)
        if value is not None and current not in (None, "main", AUTO) and current != value:
            raise ConfigError(f"--{flag} {value} and --{name} {current}: give one of them")
        if value is not None:
            setattr(target, name, value)

    set_once(model_args, "revision", example.model_revision, "model_revision")
    for flag in ("image_processor_name", "feature_extractor_name", "tokenizer_name"):
        set_once(model_args, "processor_name", getattr(example, flag), flag)
    if example.train_val_split is not None:
        if not 0 < example.train_val_split < 1:
            raise ConfigError(f"--train_val_split {example.train_val_split}: must be in (0, 1)")
        data_args.validation_split_percentage = 100 * example.train_val_split
    if example.metric_name is not None and example.metric_name not in REPORTED_METRICS:
        raise ConfigError(
            f"--metric_name {example.metric_name}: hftl reports {', '.join(REPORTED_METRICS)} "
            "(eval_report.json); use one of them, or --metric_for_best_model to pick the best "
            "checkpoint by it"
        )
    if example.task_name is not None:
        _glue_task(example.task_name.lower(), data_args, task_args, set_once)
    if example.warmup_ratio is not None:
        if not 0 <= example.warmup_ratio < 1:
            raise ConfigError(f"--warmup_ratio {example.warmup_ratio}: must be in [0, 1)")
        if training_args.warmup_steps not in (0, example.warmup_ratio):
            raise ConfigError(
                f"--warmup_ratio {example.warmup_ratio} and --warmup_steps "
                f"{training_args.warmup_steps}: give one of them"
            )
        training_args.warmup_steps = example.warmup_ratio
    if example.freeze_feature_extractor is not None:
        if not hasattr(task_args, "freeze_feature_encoder"):
            raise ConfigError(
                "--freeze_feature_extractor: an audio option; run it with the audio recipe"
            )
        task_args.freeze_feature_encoder = example.freeze_feature_extractor
    if example.do_regression:
        regression = SHAPES.get("regression").problem_type
        if data_args.problem_type not in (AUTO, regression):
            raise ConfigError(
                f"--do_regression and --problem_type {data_args.problem_type}: give one of them"
            )
        data_args.problem_type = regression
    if data_args.test_source and not training_args.do_predict:
        training_args.do_predict = True  # a test file or folder is given to be predicted
        logger.info("%s: predicted after training (--do_predict)", data_args.test_source)
    for flag in fields(example):
        help_text = flag.metadata.get("help", "")
        if help_text.startswith(NO_EFFECT) and getattr(example, flag.name) not in (None, False):
            logger.warning(
                "--%s has no effect in hftl: %s", flag.name, help_text.removeprefix(NO_EFFECT)
            )
    if example.metric_name is not None:
        if training_args.metric_for_best_model is None:
            training_args.metric_for_best_model = example.metric_name
        logger.info("--metric_name %s: reported with the others", example.metric_name)


def _glue_task(name: str, data_args, task_args, set_once) -> None:
    """``--task_name`` as run_glue.py reads it: the GLUE configuration, its columns, its split."""
    if name not in GLUE_TASKS:
        raise ConfigError(
            f"--task_name {name}: not a GLUE task; choose one of {', '.join(GLUE_TASKS)}"
        )
    if not hasattr(task_args, "text_pair_column_name"):
        raise ConfigError(f"--task_name {name}: a GLUE text task; run it with the text recipe")
    if data_args.train_file or data_args.train_dir:
        raise ConfigError(
            f"--task_name {name} reads {GLUE_DATASET}; drop it to train on your own files "
            "(as run_glue.py does)"
        )
    set_once(data_args, "dataset_name", GLUE_DATASET, "task_name")
    set_once(data_args, "dataset_config_name", name, "task_name")
    first, second = GLUE_TASKS[name]
    set_once(task_args, "text_column_name", first, "task_name")
    set_once(task_args, "text_pair_column_name", second, "task_name")
    set_once(data_args, "label_column_name", "label", "task_name")
    if name in GLUE_REGRESSION:
        set_once(data_args, "problem_type", SHAPES.get("regression").problem_type, "task_name")
    if name in GLUE_EVAL_SPLITS and data_args.eval_split_name == "validation":
        data_args.eval_split_name = GLUE_EVAL_SPLITS[name]
