"""Text classification (sentiment, topics, ...): any ``AutoModelForSequenceClassification``
checkpoint, BERT family first.

Preprocessing is the model's tokenizer with truncation to ``max_seq_length``; padding happens per
batch (``DataCollatorWithPadding``), so a batch is as long as its longest example, and the recipe
groups examples of similar length into batches (``train_sampling_strategy: group_by_length``).
``pad_to_max_length`` pads everything to ``max_seq_length`` instead.

The head reads the feature the checkpoint was trained to give (``pooling``): sentence encoders
(sentence-transformers checkpoints, which say so in ``modules.json`` / ``1_Pooling/config.json``)
get the mean (or max) of their token vectors through :mod:`hftl.tasks.pooled_text`; other
checkpoints keep their architecture's own head, which reads the first token ([CLS]).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from datasets import DatasetDict, Value
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
)
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_MAPPING,
)

from hftl.data import is_text
from hftl.errors import ConfigError
from hftl.tasks.base import Prepared, Task
from hftl.tasks.pooled_text import (
    POOLINGS,
    PooledTextClassifier,
    PooledTextConfig,
    build_encoder,
    no_pooler,
)

logger = logging.getLogger(__name__)

TEXT_NAMES = ("text", "sentence", "review", "content", "document", "tweet")
POOLING_CHOICES = ("auto", "cls", *POOLINGS)

# hftl loads its pooled classifier without remote code; a saved one carries pooled_text.py and
# an auto_map, so others load it with trust_remote_code=True (and without hftl)
AutoConfig.register(PooledTextConfig.model_type, PooledTextConfig, exist_ok=True)
AutoModelForSequenceClassification.register(PooledTextConfig, PooledTextClassifier, exist_ok=True)
PooledTextConfig.register_for_auto_class()
PooledTextClassifier.register_for_auto_class("AutoModelForSequenceClassification")


@dataclass
class TextClassificationArguments:
    """The text task's own data options."""

    text_column_name: str | None = field(
        default=None, metadata={"help": "Text column (auto-detected)."}
    )
    text_column_names: str | None = field(
        default=None,
        metadata={
            "help": "Text: several text columns, comma-separated, joined into one text with "
            "--text_column_delimiter (as run_classification.py does); instead of "
            "--text_column_name."
        },
    )
    text_column_delimiter: str = field(
        default=" ", metadata={"help": "Text: what joins --text_column_names (default a space)."}
    )
    text_pair_column_name: str | None = field(
        default=None,
        metadata={
            "help": "Text: a second text column; each example is the pair (text, text pair), "
            "encoded together as run_glue.py does for sentence-pair tasks (MRPC, MNLI, ...)."
        },
    )
    max_seq_length: int = field(default=256, metadata={"help": "Text: tokens kept per example."})
    pad_to_max_length: bool = field(
        default=False,
        metadata={
            "help": "Text: pad every example to max_seq_length (run_glue's default). Default: "
            "pad each batch to its longest example, which is much faster on short texts."
        },
    )

    pooling: str = field(
        default="auto",
        metadata={
            "help": "Text: what the head reads. auto: the pooling the checkpoint was trained "
            "with (a sentence-transformers checkpoint's 1_Pooling/config.json, e.g. mean for "
            "all-MiniLM-L6-v2), else cls; cls: the architecture's own head ([CLS] / first "
            "token); mean / max: over the real tokens, through hftl's pooled head (a saved "
            "model then loads with trust_remote_code=True).",
            "choices": POOLING_CHOICES,
        },
    )

    def __post_init__(self):
        if self.max_seq_length < 1:
            raise ValueError(f"--max_seq_length {self.max_seq_length}: must be >= 1")
        if self.text_column_names is not None:
            if self.text_column_name is not None:
                raise ValueError(
                    f"--text_column_name {self.text_column_name} and --text_column_names "
                    f"{self.text_column_names}: give one of them"
                )
            if not self.joined_columns:
                raise ValueError(f"--text_column_names {self.text_column_names!r}: no column names")
        if self.pooling not in POOLING_CHOICES:
            raise ValueError(
                f"--pooling {self.pooling}: choose one of {', '.join(POOLING_CHOICES)}"
            )

    @property
    def joined_columns(self) -> list[str]:
        """The columns of --text_column_names (empty without it)."""
        return [n.strip() for n in (self.text_column_names or "").split(",") if n.strip()]


class TextClassification(Task):
    name = "text-classification"
    summary = "a text -> one of N labels (BERT, RoBERTa, DistilBERT, DeBERTa, MiniLM, ...)"
    arguments = TextClassificationArguments
    auto_model = AutoModelForSequenceClassification
    model_types = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    input_name = "text"
    processor_name = "tokenizer"
    example_input = "I really enjoyed this, one of the best I have seen."
    processor_class = "AutoTokenizer"
    onnx_snippet = ("", '["I really enjoyed this, one of the best I have seen."]')
    # Batches of similar length: with per-batch padding, far fewer pad tokens to compute on
    # (docs/benchmarks.md). A config or flag may set it back to "random".
    recipe_defaults = {"train_sampling_strategy": "group_by_length"}
    advise_models = (
        "sentence-transformers/all-MiniLM-L6-v2",
        "distilbert/distilbert-base-uncased",
        "google-bert/bert-base-uncased",
        "FacebookAI/roberta-base",
    )
    learning_rate = 5e-5
    lora_lr_multiplier = 20.0

    def builds(self, model_type):
        return model_type in self.model_types or model_type == PooledTextConfig.model_type

    def load_processor(self, path, **kwargs):
        return AutoTokenizer.from_pretrained(path, **kwargs)

    def load_model(self, path, config, task_args=None, *, from_scratch=False, **kwargs):
        """The architecture's own classifier (``pooling`` cls), or hftl's pooled head on the
        pretrained encoder (mean / max); ``auto`` reads what the checkpoint was trained with."""
        hub = {k: kwargs[k] for k in ("revision", "cache_dir", "token") if k in kwargs}
        choice = task_args.pooling if task_args is not None else "auto"
        pooled = config.model_type == PooledTextConfig.model_type  # an hftl model, trained on
        if pooled:
            pooling = config.pooling if choice == "auto" else choice
            if pooling == "cls":
                raise ConfigError(
                    f"--pooling cls: {path} is an hftl pooled classifier ({config.pooling} "
                    "pooling) without the architecture's own head; use --pooling auto, mean or max"
                )
            config.pooling = pooling
            logger.info("pooling: %s of the token vectors (the checkpoint's)", pooling)
            return super().load_model(path, config, task_args, from_scratch=from_scratch, **kwargs)
        pooling, reason = resolve_pooling(choice, path, **hub)
        logger.info("pooling (%s): %s", reason, describe_pooling(pooling))
        if pooling == "cls":
            return super().load_model(path, config, task_args, from_scratch=from_scratch, **kwargs)
        if type(config) not in MODEL_MAPPING:
            raise ConfigError(
                f"--pooling {pooling}: hftl's pooled head needs an encoder that AutoModel builds, "
                f"and a '{config.model_type}' checkpoint is not one; use --pooling cls"
            )
        encoder_class = MODEL_MAPPING[type(config)]
        wrapper = PooledTextConfig(
            encoder_config=config.to_dict(),
            pooling=pooling,
            classifier_dropout=_dropout_of(config),
            id2label=config.id2label,
            label2id=config.label2id,
        )
        if from_scratch:
            return PooledTextClassifier(wrapper, encoder=build_encoder(config)), None
        kwargs.pop("ignore_mismatched_sizes", None)  # the head is new: no sizes to match
        encoder, loading = AutoModel.from_pretrained(
            path, config=config, output_loading_info=True, **no_pooler(encoder_class), **kwargs
        )
        model = PooledTextClassifier(wrapper, encoder=encoder)
        prefix = f"{model.base_model_prefix}."
        loading = {key: [prefix + k for k in values] if key == "missing_keys" else values
                   for key, values in loading.items()}  # fmt: skip
        loading["missing_keys"] += ["classifier.weight", "classifier.bias"]
        return model, loading

    def describe_model(self, model):
        return {"pooling": getattr(model.config, "pooling", "cls")}

    def find_input_column(self, features, columns, task_args):
        from hftl.data import pick_column

        pair = task_args.text_pair_column_name
        if pair is not None and pair not in columns:
            raise ConfigError(
                f"--text_pair_column_name {pair}: no such column (the data has "
                f"{', '.join(columns)}); name one of them"
            )
        columns = [c for c in columns if c != pair]
        named = task_args.text_column_name
        if named and named not in columns and "," in named and task_args.text_column_names is None:
            # run_classification.py has only --text_column_names, so its README's
            # --text_column_name "a,b,c" is argparse's abbreviation of it: read it so
            task_args.text_column_names, task_args.text_column_name = named, None
            logger.info(
                "--text_column_name %s: read as --text_column_names (several columns)", named
            )
        joined = task_args.joined_columns
        missing = [c for c in joined if c not in columns]
        if missing:
            raise ConfigError(
                f"--text_column_names {task_args.text_column_names}: no column "
                f"{', '.join(missing)} (the data has {', '.join(columns)})"
            )
        if joined:
            return joined[0]  # the others are joined to it in check_inputs()
        strings = [c for c in columns if is_text(features[c])]
        return pick_column(
            "text",
            task_args.text_column_name,
            columns,
            typed=strings if len(strings) == 1 else [],
            by_name=[c for c in TEXT_NAMES if c in strings] or strings,
        )

    def input_columns(self, columns, task_args):
        pair = task_args.text_pair_column_name
        return [*(task_args.joined_columns or [columns.inputs]), *([pair] if pair else [])]

    def check_inputs(self, dataset, column, task_args=None):
        joined = task_args.joined_columns if task_args is not None else []
        if len(joined) > 1:  # --text_column_names: one text per row, checked once joined
            dataset = join_text_columns(dataset, joined, task_args.text_column_delimiter)
            logger.info(
                "text: columns %s joined with %r",
                ", ".join(joined),
                task_args.text_column_delimiter,
            )
        else:
            check_text_rows(dataset, column)
        if task_args is not None and task_args.text_pair_column_name is not None:
            check_text_rows(
                dataset, task_args.text_pair_column_name, flag="--text_pair_column_name"
            )
        return dataset

    def input_values(self, data, column, task_args):
        """The texts, or (text, text pair) where the run encodes pairs."""
        pair = task_args.text_pair_column_name
        if pair is None:
            return list(data[column])
        if pair not in data.column_names:
            raise ConfigError(
                f"the model reads text pairs (--text_pair_column_name {pair}), and the data has "
                f"no column {pair} (it has {', '.join(data.column_names)})"
            )
        return list(zip(data[column], data[pair], strict=True))

    def batch_inputs(self, processor, task_args):
        padding = "max_length" if task_args.pad_to_max_length else True

        def batch(values):
            pairs = [v for v in values if isinstance(v, tuple)]
            if pairs and len(pairs) != len(values):
                raise ValueError("a batch of texts mixes single texts and pairs")
            texts = [v[0] for v in values] if pairs else list(values)
            for text in texts + [v[1] for v in pairs]:
                if not isinstance(text, str) or not text.strip():
                    raise ConfigError(f"an empty text ({text!r}); nothing to classify")
            return dict(processor(
                texts, [v[1] for v in pairs] if pairs else None, truncation=True,
                max_length=task_args.max_seq_length, padding=padding, return_tensors="pt",
            ))  # fmt: skip

        return batch

    def prepare(self, raw, processor, columns, task_args, training_args):
        pair = task_args.text_pair_column_name
        if pair is not None:
            logger.info("text pairs: ('%s', '%s'), encoded together", columns.inputs, pair)
        with training_args.main_process_first(desc="tokenizing"):
            tokenized = tokenize_dataset(
                raw,
                processor,
                columns.inputs,
                columns.label,
                task_args.max_seq_length,
                task_args.pad_to_max_length,
                pair_column=pair,
            )
        return Prepared(
            train=tokenized["train"],
            eval=tokenized["validation"],
            collator=DataCollatorWithPadding(processor),
            test=tokenized.get("test"),
        )


def describe_pooling(pooling: str) -> str:
    if pooling == "cls":
        return "cls: the architecture's own head reads the first token"
    return (
        f"{pooling} of the token vectors: hftl's pooled head, saved with its code (it loads "
        "with trust_remote_code=True)"
    )


def resolve_pooling(choice: str, path: str, **hub) -> tuple[str, str]:
    """(cls, mean or max; why) for ``--pooling choice`` and the checkpoint at ``path`` (a local
    directory or a Hub id)."""
    if choice != "auto":
        return choice, "--pooling"
    trained = sentence_transformers_pooling(path, **hub)
    if trained is None:
        return "cls", "auto: the checkpoint names no sentence-transformers pooling"
    mode, name = trained
    if mode not in ("cls", *POOLINGS):
        raise ConfigError(
            f"--pooling auto: {path}/{name} says the checkpoint was trained with {mode} "
            "pooling, which hftl does not offer; choose --pooling cls, mean or max"
        )
    return mode, f"auto: the checkpoint's sentence-transformers pooling, {name}"


ST_MODES = {  # sentence-transformers' Pooling config keys -> the pooling's name
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def sentence_transformers_pooling(path: str, **hub) -> tuple[str, str] | None:
    """(the pooling mode, the file in the checkpoint that says so) of a sentence-transformers
    checkpoint: its
    ``modules.json`` names the Pooling module's folder, whose ``config.json`` sets the mode.
    None where the checkpoint has no such files (or, for a Hub id, they cannot be fetched)."""
    modules = _checkpoint_file(path, "modules.json", **hub)
    if modules is None:
        return None
    try:
        entries = json.loads(Path(modules).read_text())
        folder = next(e["path"] for e in entries if str(e.get("type", "")).endswith("Pooling"))
    except (ValueError, KeyError, TypeError, StopIteration):
        return None
    name = f"{folder}/config.json" if folder else "config.json"
    config_file = _checkpoint_file(path, name, **hub)
    if config_file is None:
        return None
    try:
        settings = json.loads(Path(config_file).read_text())
    except ValueError as error:
        raise ConfigError(f"{config_file}: not valid JSON ({error}); fix or delete it") from None
    modes = [mode for key, mode in ST_MODES.items() if settings.get(key)]
    if settings.get("pooling_mode") and not modes:
        modes = [str(settings["pooling_mode"])]
    if not modes:
        return None
    mode = modes[0] if len(modes) == 1 else " + ".join(modes)
    return mode, name


def _checkpoint_file(path: str, name: str, revision=None, cache_dir=None, token=None) -> str | None:
    local = Path(path).expanduser()
    if local.is_dir():
        return str(local / name) if (local / name).is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return hf_hub_download(path, name, revision=revision, cache_dir=cache_dir, token=token)
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError):
        return None


def _dropout_of(config) -> float:
    """The dropout the family's own classifier would use before its last layer."""
    for key in ("classifier_dropout", "seq_classif_dropout", "hidden_dropout_prob", "dropout"):
        value = getattr(config, key, None)
        if value is not None:
            return float(value)
    return 0.1


def join_text_columns(dataset, columns: list[str], delimiter: str):
    """The text columns ``columns`` joined into the first, row by row, with ``delimiter`` (empty
    cells left out); a row whose columns are all empty is refused, naming split and row."""
    for split, data in dataset.items():
        for column in columns:
            if not is_text(data.features[column]):
                raise ConfigError(
                    f"split '{split}': column '{column}' of --text_column_names is not text"
                )

    def join(batch):
        rows = zip(*(batch[c] for c in columns), strict=True)
        joined = [
            delimiter.join(str(v) for v in row if v is not None and str(v).strip()) for row in rows
        ]
        return {columns[0]: joined}

    dataset = dataset.map(join, batched=True, desc="Joining text columns")
    check_text_rows(dataset, columns[0], flag="--text_column_names")
    return dataset


def check_text_rows(dataset, text_column: str, flag: str = "--text_column_name") -> None:
    """Refuse rows without text, naming the split and row."""
    for split, data in dataset.items():
        feature = data.features[text_column]
        if not is_text(feature):
            kind = feature.dtype if isinstance(feature, Value) else type(feature).__name__
            raise ConfigError(
                f"split '{split}': column '{text_column}' holds {kind}, not text; name the text "
                f"column with {flag}"
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
    pair_column: str | None = None,
):
    """Tokenize (truncating; padding only with ``pad_to_max_length``; ``pair_column``: the
    second text of a pair) and keep only model inputs and ``labels``."""
    padding = "max_length" if pad_to_max_length else False

    def tokenize(batch):
        pairs = batch[pair_column] if pair_column is not None else None
        encoded = tokenizer(
            batch[text_column], pairs, truncation=True, max_length=max_length, padding=padding
        )
        encoded["labels"] = batch[label_column]
        return encoded

    return DatasetDict({
        split: data.map(tokenize, batched=True, remove_columns=data.column_names, desc="Tokenizing")
        for split, data in dataset.items()
    })  # fmt: skip
