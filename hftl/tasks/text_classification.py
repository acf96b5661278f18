"""Text classification (sentiment, topics, ...): any ``AutoModelForSequenceClassification``
checkpoint, BERT family first.

Preprocessing is the model's tokenizer with truncation to ``max_seq_length``; padding happens per
batch (``DataCollatorWithPadding``), so a batch is as long as its longest example, and the recipe
groups examples of similar length into batches (``train_sampling_strategy: group_by_length``).
``pad_to_max_length`` pads everything to ``max_seq_length`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from datasets import Value
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

from hftl.errors import ConfigError
from hftl.tasks.base import Prepared, Task

TEXT_NAMES = ("text", "sentence", "review", "content", "document", "tweet")


@dataclass
class TextClassificationArguments:
    """The text task's own data options."""

    text_column_name: str | None = field(
        default=None, metadata={"help": "Text column (auto-detected)."}
    )
    max_seq_length: int = field(default=256, metadata={"help": "Text: tokens kept per example."})
    pad_to_max_length: bool = field(
        default=False,
        metadata={
            "help": "Text: pad every example to max_seq_length (run_glue's default). Default: "
            "pad each batch to its longest example, which is much faster on short texts."
        },
    )

    def __post_init__(self):
        if self.max_seq_length < 1:
            raise ValueError(f"--max_seq_length {self.max_seq_length}: must be >= 1")


class TextClassification(Task):
    name = "text-classification"
    summary = "a text -> one of N labels (BERT, RoBERTa, DistilBERT, DeBERTa, MiniLM, ...)"
    arguments = TextClassificationArguments
    auto_model = AutoModelForSequenceClassification
    model_types = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    input_name = "text"
    processor_name = "tokenizer"
    example_input = "I really enjoyed this, one of the best I have seen."
    # Batches of similar length: with per-batch padding, far fewer pad tokens to compute on
    # (docs/benchmarks.md). A config or flag may set it back to "random".
    recipe_defaults = {"train_sampling_strategy": "group_by_length"}
    tiny_kinds = ("bert", "roberta", "distilbert")

    def load_processor(self, path, **kwargs):
        return AutoTokenizer.from_pretrained(path, **kwargs)

    def find_input_column(self, features, columns, task_args):
        from hftl.data import pick_column

        strings = [c for c in columns if is_text(features[c])]
        return pick_column(
            "text",
            task_args.text_column_name,
            columns,
            typed=strings if len(strings) == 1 else [],
            by_name=[c for c in TEXT_NAMES if c in strings] or strings,
        )

    def check_inputs(self, dataset, column):
        check_text_rows(dataset, column)
        return dataset

    def prepare(self, raw, processor, columns, task_args, training_args):
        with training_args.main_process_first(desc="tokenizing"):
            tokenized = tokenize_dataset(
                raw,
                processor,
                columns.inputs,
                columns.label,
                task_args.max_seq_length,
                task_args.pad_to_max_length,
            )
        return Prepared(
            train=tokenized["train"],
            eval=tokenized["validation"],
            collator=DataCollatorWithPadding(processor),
        )

    def dummy_batch(self, batch_size, generator):
        from hftl.testing import TEXT_VOCAB

        ids = torch.randint(3, TEXT_VOCAB, (batch_size, 12), generator=generator)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def toy_dataset(self, num_examples, seed=0):
        from hftl.testing import keyword_dataset

        return keyword_dataset(num_examples, seed=seed)


def is_text(feature) -> bool:
    return isinstance(feature, Value) and feature.dtype in ("string", "large_string")


def check_text_rows(dataset, text_column: str) -> None:
    """Refuse rows without text, naming the split and row."""
    for split, data in dataset.items():
        feature = data.features[text_column]
        if not is_text(feature):
            kind = feature.dtype if isinstance(feature, Value) else type(feature).__name__
            raise ConfigError(
                f"split '{split}': column '{text_column}' holds {kind}, not text; name the text "
                "column with --text_column_name"
            )
        for index, value in enumerate(data[text_column]):
            if value is None or not str(value).strip():
                raise ConfigError(
                    f"split '{split}': data row {index + 1} has an empty '{text_column}'; fill or drop it"
                )


def tokenize_dataset(
    dataset,
    tokenizer,
    text_column: str,
    label_column: str,
    max_length: int,
    pad_to_max_length: bool = False,
):
    """Tokenize (truncating; padding only with ``pad_to_max_length``) and keep only model inputs
    and ``labels``."""
    padding = "max_length" if pad_to_max_length else False

    def tokenize(batch):
        encoded = tokenizer(
            batch[text_column], truncation=True, max_length=max_length, padding=padding
        )
        encoded["labels"] = batch[label_column]
        return encoded

    return dataset.map(
        tokenize, batched=True, remove_columns=dataset["train"].column_names, desc="Tokenizing"
    )
