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
    check_test_columns,
    load_raw_datasets,
    read_labels,
    resolve_columns,
    split_test_labels,
)
from hftl.errors import ConfigError
from hftl.hf_examples import ExampleScriptArguments, apply_example_flags
from hftl.models import describe_loading, hub_options, load_classifier, load_processor, read_config
from hftl.outputs import TestSplit, finish_run, input_references, start_run
from hftl.reference import Reference, ReferenceArguments, reference_flags
from hftl.shapes import LabelSpec
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


def run_task(task, argv=None, *, prog: str, callbacks: list | None = None,
             evaluate_only: bool = False):  # fmt: skip
    """Parse ``argv`` (``--config run.yaml`` and flags) for ``task`` and run it.

    Args:
        task: a :class:`~hftl.tasks.base.Task` or its registered name.
        argv: the command line without the program name (default ``sys.argv[1:]``).
        prog: the program name for messages.
        callbacks: extra ``TrainerCallback``\\ s (e.g. a benchmark's timer).
        evaluate_only: a trial of ``hftl tune``: train, evaluate the final model, and stop there
            (nothing saved, no card; the returned report is ``Trainer.evaluate``'s metrics).

    Returns:
        (the validation report, the trainer; its model is the final one)
    """
    task = task_of(task)
    arguments = parse_run_config(task, argv, prog=prog)
    model_args, data_args, task_args, training_args, reference_args = arguments
    if evaluate_only:  # a trial selects on validation: the test split is never read
        training_args.do_predict = False

    # output directory (a finished run is refused; an interrupted one resumes), train.log
    with start_run(arguments, task) as run:
        # the hftl: assets the options name, fetched before anything loads (one process first)
        with training_args.main_process_first(desc="fetching hftl: assets"):
            fetch_named(model_args, data_args, reference_args)
        set_seed(training_args.seed)
        # the pretrained model's preprocessing (a wrong model path stops here, before the data)
        processor = load_processor(model_args, task)
        # data: splits, columns, labels (their shape, names, weights; checked)
        raw, columns, labels = load_classification_data(
            data_args, task, task_args, seed=training_args.seed, cache_dir=model_args.cache_dir,
            token=model_args.token, predict=training_args.do_predict,
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
            compute_metrics=labels.compute_metrics,
            processing_class=processor,
            callbacks=callbacks,
            reference=reference,
            label_spec=labels,
        )
        trainer.train(resume_from_checkpoint=run.resume)
        if evaluate_only:  # the final model, as trained (after any guard's mix, e.g. WiSE-FT)
            return trainer.evaluate(), trainer

        # evaluate; save model, processor, config, metrics, log, card; push if asked
        test = None
        if data.test is not None:  # --do_predict: with what each test row was (file or text)
            test = TestSplit(data.test, input_references(raw["test"][columns.inputs]),
                             labelled=columns.test_labelled)  # fmt: skip
        report = finish_run(trainer, trainer.eval_dataset, labels, run, test=test)
    return report, trainer


def load_classification_data(
    args: DataArguments, task, task_args, *, seed: int, cache_dir: str | None = None,
    token: str | None = None, predict: bool = False,
) -> tuple[DatasetDict, Columns, LabelSpec]:  # fmt: skip
    """Everything a run needs from its data, checked.

    Loads the splits, finds the label column(s) and the task's input column, refuses unusable
    inputs (the task names them: empty texts, unreadable images), reads the labels with their
    shape (:mod:`hftl.shapes`: classes, several labels, numbers) and makes sure there is a
    validation split.

    Args:
        task: the :class:`~hftl.tasks.base.Task` (or its registered name).
        task_args: the task's own arguments (``task.arguments``).

    ``predict`` (``--do_predict``): the test split too, read and checked with the others before
    anything trains: its input columns, its inputs, its labels (where it has them: a label the
    training data lacks is refused; ``columns.test_labelled`` says whether it has them).

    Returns:
        (datasets with ``train`` and ``validation`` (and ``test``), the columns, the run's labels)
    """
    task = task_of(task)
    raw = load_raw_datasets(args, task, cache_dir=cache_dir, token=token, predict=predict)
    columns = resolve_columns(raw, args, task, task_args)
    check_test_columns(raw, task.input_columns(columns, task_args),
                       args.test_source or f"--test_split_name {args.test_split_name}")  # fmt: skip
    raw, columns = split_test_labels(raw, columns)
    raw = task.check_inputs(raw, columns.inputs, task_args)
    raw, labels = read_labels(raw, columns, args, seed=seed)
    logger.info(
        "labels (%s): %s; train %d, validation %d", labels.shape.name, labels.names,
        len(raw["train"]), len(raw["validation"]),
    )  # fmt: skip
    return raw, columns, labels


def load_reference(reference_args: ReferenceArguments, model_args, task, task_args,
                   training_args, processor) -> Reference | None:  # fmt: skip
    """The reference task of a run (None where no reference data is given): the reference
    model with its own head and labels, its data prepared like the main data (the same
    processor) and read as the model's label shape says (``problem_type``), its labels aligned
    with the reference model's ids. Label names that the model does not know are a one-line
    error."""
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
    known = [str(config.id2label[i]) for i in sorted(config.id2label)]
    data_args = reference_args.data_arguments()
    if getattr(config, "problem_type", None):  # the reference model says what its labels are
        data_args.problem_type = config.problem_type
    try:
        raw, columns, spec = load_classification_data(
            data_args, task, task_args, seed=training_args.seed, cache_dir=model_args.cache_dir,
            token=model_args.token,
        )  # fmt: skip
        # the data's labels in the reference model's order (names, or targets by position)
        raw, spec = spec.shape.align(raw, columns.label, spec, known, name)
        spec.thresholds = LabelSpec.from_config(config).thresholds  # multi-label: its own
    except ConfigError as error:  # the same checks as the main data's, in the reference's flags
        raise ConfigError(f"reference data: {reference_flags(str(error))}") from error
    model, loading = task.load_model(path, config, task_args, **hub_options(model_args))
    logger.info("reference model: %s", describe_loading(model, loading, name))
    data = task.prepare(raw, processor, columns, task_args, training_args)
    return Reference(model, known, data.train, data.eval, data.collator, name, spec=spec)
