"""What a task (a modality with its head) is: everything about it that the rest of hftl must not
know. One module per task registers one of these; library code outside ``hftl/tasks/`` asks the
task object and never compares task names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class Prepared:
    """A task's datasets in model format and the collator that batches them. A random training
    transform carries ``hftl_random = True`` (the feature cache then caches several views)."""

    train: Any
    eval: Any
    collator: Any
    test: Any = None  # --do_predict: the test split, prepared as the validation split is


class Task:
    """A classification task over one input modality.

    Attributes:
        name: the registry name, which is also the ``pipeline()`` tag and the card template
            (``model_cards/<name>.md.j2``).
        summary: one line for the docs.
        arguments: a dataclass of the task's own data options (column name, preprocessing).
        auto_model: the ``AutoModelFor...`` class.
        model_types: the ``model_type`` values ``auto_model`` builds (transformers' name table).
        input_name: what one input is called in messages and flags (``--<input_name>_column_name``).
        processor_name: what ``load_processor`` loads, for messages.
        folder_builder / folder_extensions: the ``datasets`` builder for ``--train_dir`` (one
            sub-folder per class) and the file extensions it reads; None where folders are not
            a source for this task.
        example_input: what the card's usage snippet classifies.
        processor_class / onnx_snippet: the card's onnxruntime snippet (the ``Auto...`` class
            of the saved preprocessing; the imports and the inputs it is called with).
        card_tags: Hub tags the card adds for the task (beyond its pipeline tag).
        recipe_defaults: ``TrainingArguments`` defaults of the task's recipe.
        advise_models: the checkpoints ``hftl advise`` scores when ``--models`` is not given (Hub
            ids: a short list across sizes and families).
        learning_rate: the base learning rate of fine-tuning the task's usual models (what
            ``hftl advise`` starts from and ``hftl tune`` searches around; each strategy scales
            it: ``Strategy.base_learning_rate``).
        lora_lr_multiplier: LoRA's learning rate over ``learning_rate`` (measured in
            docs/transfer_study.md: higher multipliers diverged on EfficientNet).
    """

    name: str = ""
    summary: str = ""
    arguments: type | None = None
    auto_model: type | None = None
    model_types: Mapping[str, str] = {}
    input_name: str = ""
    processor_name: str = "processor"
    folder_builder: str | None = None
    folder_extensions: frozenset[str] = frozenset()
    example_input: str = ""
    # the card's onnxruntime snippet: the processor class, imports, and the processor's input
    processor_class: str = "AutoProcessor"
    onnx_snippet: tuple[str, str] = ("", "")
    card_tags: tuple[str, ...] = ()
    recipe_defaults: dict = {}
    advise_models: tuple[str, ...] = ()
    learning_rate: float = 5e-5
    lora_lr_multiplier: float = 10.0

    @property
    def pipeline_tag(self) -> str:
        return self.name

    @property
    def card_template(self) -> str:
        return f"{self.name}.md.j2"

    def builds(self, model_type: str | None) -> bool:
        """Whether ``auto_model`` builds a model of this ``model_type``."""
        return model_type in self.model_types

    def load_model(self, path: str, config, task_args=None, *, from_scratch: bool = False,
                   **kwargs) -> tuple:  # fmt: skip
        """(the classifier for ``config``, transformers' loading info or None): ``auto_model``
        from the checkpoint at ``path`` (``kwargs``: ``from_pretrained``'s hub and size options),
        or from ``config`` alone with random weights where ``from_scratch``. A task whose head
        differs from the architecture's own (the text task's pooled heads) returns its own."""
        if from_scratch:
            trust = kwargs.get("trust_remote_code", False)
            return self.auto_model.from_config(config, trust_remote_code=trust), None
        return self.auto_model.from_pretrained(
            path, config=config, output_loading_info=True, **kwargs
        )

    def describe_model(self, model) -> dict:
        """Facts about the task's head for the run record and the card (e.g. the pooling)."""
        return {}

    def load_processor(self, path: str, **kwargs):
        """The pretrained model's own preprocessing (tokenizer, image processor, ...)."""
        raise NotImplementedError

    def find_input_column(self, features, columns: list[str], task_args) -> str:
        """The input column among ``columns`` (all but the label); a ``ConfigError`` names
        the flag that settles an ambiguous or missing choice."""
        raise NotImplementedError

    def input_columns(self, columns, task_args) -> list[str]:
        """Every column the model's input is made from (a test split must have them)."""
        return [columns.inputs]

    def check_inputs(self, dataset, column: str, task_args=None):
        """Refuse unusable inputs (empty text, unreadable image), naming split and row; returns
        the dataset (possibly recast, or with the task's inputs combined into ``column``)."""
        return dataset

    def input_values(self, data, column: str, task_args) -> list:
        """The raw inputs of a dataset's rows, as :meth:`batch_inputs` takes them: the column's
        values; for a task that reads files (a folder builder), paths as ``{'path', 'bytes'}``
        file values."""
        values = data[column]
        if self.folder_builder is None:
            return list(values)
        return [v if isinstance(v, dict) else file_value(v) for v in values]

    def batch_inputs(self, processor, task_args):
        """A function from a list of raw inputs (texts; ``{'path', 'bytes'}`` file values) to
        one batch of model inputs, preprocessed as the validation split is (``hftl predict``); an
        input that cannot be read raises :class:`~hftl.errors.ConfigError` naming it."""
        raise NotImplementedError

    def prepare(self, raw, processor, columns, task_args, training_args) -> Prepared:
        """Model-ready train / validation (and, where ``raw`` has one, test) datasets and the
        collator."""
        raise NotImplementedError


def file_value(path) -> dict:
    """A file as ``datasets``' undecoded image / audio value."""
    return {"path": str(path), "bytes": None}


def rows_of(columns: dict) -> list[dict]:
    """A transform's output (a dict of columns) as one dict per example, as collators take it."""
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
