"""One run of a task recipe, start to finish; the recipes in ``recipes/`` are this with their task.

parse the options  ->  settle the output directory (refuse / resume), write run_config.yaml
-> the model's preprocessing (a wrong model stops here)  ->  the data, checked
-> the model with a new head for the labels  ->  the task's datasets and collator
-> [--reference_*: the reference task, its accuracy before training]
-> [feature_extraction: the backbone's features, once]  ->  TransferTrainer.train()
-> evaluate [and the forgetting on the reference task], save, run_info.json, card, push
"""

from __future__ import annotations

import logging

from transformers import set_seed

from hftl.config import ModelArguments, TransferTrainingArguments, parse_config
from hftl.data import DataArguments, load_classification_data
from hftl.hf_examples import ExampleScriptArguments, apply_example_flags
from hftl.metrics import compute_metrics_fn
from hftl.models import load_classifier, load_processor
from hftl.outputs import finish_run, start_run
from hftl.reference import ReferenceArguments, load_reference
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
