"""One run of a task, start to finish: ``hftl train <task>`` and the recipes in ``recipes/`` are
this with their task.

parse the options  ->  settle the output directory (refuse / resume), write run_config.yaml
-> fetch the hftl: assets the options name  ->  the model's preprocessing (a wrong model stops
here)  ->  the data, checked (:func:`load_classification_data`)
-> the model with a new head for the labels  ->  the task's datasets and collator
-> [--reference_*: the reference task, its accuracy before training (:func:`load_reference`)]
-> [feature_extraction: the backbone's features, once]  ->  TransferTrainer.train()
-> evaluate [and the forgetting on the reference task], save, run_info.json, card, push
"""

from __future__ import annotations

import copy
import logging

from datasets import DatasetDict
from transformers import set_seed

from hftl.assets import fetch_named
from hftl.config import ModelArguments, TransferTrainingArguments, parse_config
from hftl.data import (
    Columns,
    DataArguments,
    check_label_coverage,
    encode_labels,
    ensure_validation_split,
    load_raw_datasets,
    resolve_columns,
)
from hftl.errors import ConfigError
from hftl.hf_examples import ExampleScriptArguments, apply_example_flags
from hftl.metrics import compute_metrics_fn
from hftl.models import describe_loading, hub_options, load_classifier, load_processor, read_config
from hftl.outputs import finish_run, start_run
from hftl.reference import Reference, ReferenceArguments, reference_flags
from hftl.tasks import task_of
from hftl.trainer import TransferTrainer

logger = logging.getLogger(__name__)


def parse_run_config(task, argv=None, *, prog: str | None = None) -> tuple:
    """(model, data, task, training, reference) arguments of a ``task`` run from ``--config``
    and flags, with the task recipe's defaults."""
    task = task_of(task)
    *arguments, example = parse_config(
        (ModelArguments, DataArguments, task.arguments, TransferTrainingArguments,
         ReferenceArguments, ExampleScriptArguments),
        argv,
        prog=prog,
        defaults=task.recipe_defaults,
    )  # fmt: skip
    apply_example_flags(example, *arguments[:4])
    return tuple(arguments)


def run_task(task, argv=None, *, prog: str, callbacks: list | None = None):
    """Parse ``argv`` (``--config run.yaml`` and flags) for ``task`` and run it.

    Args:
        task: a :class:`~hftl.tasks.base.Task` or its registered name.
        argv: the command line without the program name (default ``sys.argv[1:]``).
        prog: the program name for messages.
        callbacks: extra ``TrainerCallback``\\ s (e.g. a benchmark's timer).

    Returns:
        (the validation report, the trainer; its model is the final one)
    """
    task = task_of(task)
    arguments = parse_run_config(task, argv, prog=prog)
    model_args, data_args, task_args, training_args, reference_args = arguments

    # output directory (a finished run is refused; an interrupted one resumes), train.log
    with start_run(arguments, task) as run:
        # the hftl: assets the options name, fetched before anything loads (one process first)
        with training_args.main_process_first(desc="fetching hftl: assets"):
            fetch_named(model_args, data_args, reference_args)
        set_seed(training_args.seed)
        # the pretrained model's preprocessing (a wrong model path stops here, before the data)
        processor = load_processor(model_args, task)
        # data: splits, columns, label names (checked)
        raw, columns, labels = load_classification_data(
            data_args, task, task_args, seed=training_args.seed, cache_dir=model_args.cache_dir,
            token=model_args.token,
        )  # fmt: skip
        # the pretrained checkpoint with a new head for these labels, and the task's datasets
        model = load_classifier(model_args, task, labels, task_args)
        data = task.prepare(raw, processor, columns, task_args, training_args)
        # the reference task, where given: forgetting is measured on it, guards (ewc) use it
        reference = load_reference(
            reference_args, model_args, task, task_args, training_args, processor
        )

        # strategy, LLRD groups, guards, metrics; a frozen backbone's features computed once
        trainer = TransferTrainer.build(
            model,
            training_args,
            train_dataset=data.train,
            eval_dataset=data.eval,
            data_collator=data.collator,
            compute_metrics=compute_metrics_fn(labels),
            processing_class=processor,
            callbacks=callbacks,
            reference=reference,
        )
        trainer.train(resume_from_checkpoint=run.resume)

        # evaluate; save model, processor, config, metrics, log, card; push if asked
        report = finish_run(trainer, trainer.eval_dataset, labels, run)
    return report, trainer


def load_classification_data(
    args: DataArguments, task, task_args, *, seed: int, cache_dir: str | None = None,
    token: str | None = None,
) -> tuple[DatasetDict, Columns, list[str]]:  # fmt: skip
    """Everything a classification recipe needs from its data, checked.

    Loads the splits, finds the label column and the task's input column, refuses unusable
    inputs (the task names them: empty texts, unreadable images), makes the labels a ClassLabel
    with names from the data, and makes sure there is a validation split.

    Args:
        task: the :class:`~hftl.tasks.base.Task` (or its registered name).
        task_args: the task's own arguments (``task.arguments``).

    Returns:
        (datasets with ``train`` and ``validation``, the columns, the label names)
    """
    task = task_of(task)
    raw = load_raw_datasets(args, task, cache_dir=cache_dir, token=token)
    columns = resolve_columns(raw, args, task, task_args)
    raw = task.check_inputs(raw, columns.inputs, task_args)
    raw, labels = encode_labels(raw, columns.label)
    raw = ensure_validation_split(raw, args, columns.label, seed=seed)
    raw, labels = check_label_coverage(
        raw, columns.label, drop_unseen=args.drop_unseen_validation_labels
    )
    logger.info(
        "labels: %s; train %d, validation %d", labels, len(raw["train"]), len(raw["validation"])
    )
    return raw, columns, labels


def load_reference(reference_args: ReferenceArguments, model_args, task, task_args,
                   training_args, processor) -> Reference | None:  # fmt: skip
    """The reference task of a run (None where no reference data is given): the reference
    model with its own head and labels, its data prepared like the main data (the same
    processor), its labels aligned with the reference model's ids. Label names that the model
    does not know are a one-line error."""
    if not reference_args.given:
        if reference_args.reference_model_name_or_path:
            raise ConfigError(
                "--reference_model_name_or_path without reference data: add "
                "--reference_train_file / --reference_train_dir / --reference_dataset_name"
            )
        return None
    name = reference_args.reference_model_name_or_path or model_args.model_name_or_path
    reference_model_args = copy.copy(model_args)
    reference_model_args.model_name_or_path = name
    path, config = read_config(reference_model_args)
    known = [config.id2label[i] for i in sorted(config.id2label)]
    if all(str(label).startswith("LABEL_") for label in known):
        raise ConfigError(
            f"--reference_model_name_or_path {name}: its head has no label names (LABEL_0, ...), "
            "so its classes cannot be matched with the reference data; give a fine-tuned model"
        )
    try:
        raw, columns, labels = load_classification_data(
            reference_args.data_arguments(), task, task_args, seed=training_args.seed,
            cache_dir=model_args.cache_dir, token=model_args.token,
        )  # fmt: skip
    except ConfigError as error:  # the same checks as the main data's, in the reference's flags
        raise ConfigError(f"reference data: {reference_flags(str(error))}") from error
    unknown = sorted(set(labels) - set(known))
    if unknown:
        raise ConfigError(
            f"reference data: labels {', '.join(unknown[:3])} are not among the reference model's "
            f"({', '.join(known[:5])}{', ...' if len(known) > 5 else ''}); give the data the "
            f"model {name} was trained on"
        )
    raw = raw.align_labels_with_mapping({label: known.index(label) for label in known},
                                        columns.label)  # fmt: skip
    model, loading = task.load_model(path, config, task_args, **hub_options(model_args))
    logger.info("reference model: %s", describe_loading(model, loading, name))
    data = task.prepare(raw, processor, columns, task_args, training_args)
    return Reference(model, known, data.train, data.eval, data.collator, name)
