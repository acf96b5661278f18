"""The reference task: what a model knew before this run, to protect and to measure forgetting on.

A model fine-tuned on task A and now fine-tuned on task B forgets A. ``--reference_*`` names task
A: a model that answers it (``reference_model_name_or_path``, with its own head and labels;
default: ``--model_name_or_path`` itself, the usual case of fine-tuning a fine-tuned model
further) and its data, in the same forms as the main data (``--reference_dataset_name``,
``--reference_train_dir`` / ``--reference_validation_dir``, ``--reference_train_file`` /
``--reference_validation_file``). With it:

* the run measures forgetting: the reference model's accuracy on the reference validation data
  before training, and after it, with the trained backbone under the reference head; the drop is
  in ``run_info.json`` (``reference``) and the card;
* guards that need the old task use it (``ewc``: the Fisher information of the starting weights
  on the reference training data).

The reference model must share the trained model's backbone tensor for tensor (names and shapes):
its head is the only part that differs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from hftl.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class ReferenceArguments:
    """The reference task (the one forgetting is measured on)."""

    reference_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A model that answers the reference task, with its own head and labels "
            "(default: --model_name_or_path, when reference data is given)."
        },
    )
    reference_dataset_name: str | None = field(
        default=None, metadata={"help": "Reference task: Hub dataset name or local dataset dir."}
    )
    reference_dataset_config_name: str | None = field(default=None)
    reference_train_dir: str | None = field(
        default=None, metadata={"help": "Reference task: training folder (one sub-folder a class)."}
    )
    reference_validation_dir: str | None = field(
        default=None, metadata={"help": "Reference task: validation folder."}
    )
    reference_train_file: str | None = field(
        default=None, metadata={"help": "Reference task: training file (CSV / JSON / Parquet)."}
    )
    reference_validation_file: str | None = field(
        default=None, metadata={"help": "Reference task: validation file."}
    )
    reference_max_train_samples: int | None = field(
        default=2000,
        metadata={"help": "Reference training rows read (what the guards use); none: all."},
    )
    reference_max_eval_samples: int | None = field(
        default=None, metadata={"help": "Reference validation rows the forgetting is measured on."}
    )

    @property
    def given(self) -> bool:
        return bool(self.reference_dataset_name or self.reference_train_dir
                    or self.reference_train_file)  # fmt: skip

    def data_arguments(self):
        from hftl.data import DataArguments

        return DataArguments(
            dataset_name=self.reference_dataset_name,
            dataset_config_name=self.reference_dataset_config_name,
            train_dir=self.reference_train_dir,
            validation_dir=self.reference_validation_dir,
            train_file=self.reference_train_file,
            validation_file=self.reference_validation_file,
            max_train_samples=self.reference_max_train_samples,
            max_eval_samples=self.reference_max_eval_samples,
        )


class Reference:
    """The reference task loaded: ``model`` (its own head), ``labels``, ``train`` / ``eval``
    datasets in model format and their ``collator``; ``before`` (its validation accuracy as
    loaded) and, once :meth:`measure` ran, ``after``."""

    def __init__(self, model: nn.Module, labels: list[str], train, eval, collator, name: str):
        self.model, self.labels, self.train, self.eval = model, labels, train, eval
        self.collator, self.name = collator, name
        from hftl.layers import build_layer_map

        layer_map = build_layer_map(model)
        self.head = set(layer_map.names_at(layer_map.head_depth))
        self.before = self.accuracy()
        self.after: float | None = None

    def check_backbone(self, model: nn.Module) -> None:
        """The reference model's backbone is ``model``'s, name for name and shape for shape."""
        ours = {n: t.shape for n, t in self.model.state_dict().items() if n not in self.head}
        from hftl.layers import build_layer_map

        layer_map = build_layer_map(model)
        head = set(layer_map.names_at(layer_map.head_depth))
        theirs = {n: t.shape for n, t in model.state_dict().items() if n not in head}
        if ours != theirs:
            differ = sorted(set(ours) ^ set(theirs)) or [n for n in ours if ours[n] != theirs[n]]
            raise ConfigError(
                f"--reference_model_name_or_path {self.name}: its backbone is not the trained "
                f"model's ({', '.join(differ[:3])} differ); give a model of the same architecture"
            )

    def backbone_matches(self, model: nn.Module) -> bool:
        """Whether the reference model's backbone weights equal ``model``'s (the starting point)."""
        theirs = model.state_dict()
        return all(
            torch.equal(tensor.cpu(), theirs[name].detach().cpu())
            for name, tensor in self.model.state_dict().items()
            if name not in self.head
        )

    @torch.inference_mode()
    def accuracy(self) -> float:
        """The reference model's accuracy on the reference validation data."""
        loader = torch.utils.data.DataLoader(self.eval, batch_size=64, collate_fn=self.collator)
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        right = total = 0
        try:
            for batch in loader:
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                labels = batch.pop("labels")
                logits = self.model(**batch).logits
                right += int((logits.argmax(-1) == labels).sum())
                total += len(labels)
        finally:
            self.model.train(was_training)
        return right / max(total, 1)

    def measure(self, model: nn.Module) -> dict:
        """The reference accuracy with ``model``'s backbone under the reference head: the record
        for ``run_info.json`` (``before``, ``after``, ``forgetting`` = before - after)."""
        state = {n: t for n, t in model.state_dict().items() if n not in self.head}
        missing = set(self.model.state_dict()) - self.head - set(state)
        if missing:
            raise RuntimeError(f"reference: the trained model lacks {sorted(missing)[:3]}")
        self.model.load_state_dict(state, strict=False)
        self.after = self.accuracy()
        record = {
            "model": self.name,
            "labels": self.labels,
            "validation_rows": len(self.eval),
            "accuracy_before": round(self.before, 4),
            "accuracy_after": round(self.after, 4),
            "forgetting": round(self.before - self.after, 4),
        }
        logger.info(
            "reference task: accuracy %.4f before, %.4f after (forgetting %.4f)",
            self.before, self.after, self.before - self.after,
        )  # fmt: skip
        return record


def load_reference(reference_args: ReferenceArguments, model_args, task, task_args,
                   training_args, processor) -> Reference | None:  # fmt: skip
    """The reference task of a run (None where no reference data is given): the reference
    model with its own head and labels, its data prepared like the main data (the same
    processor), its labels aligned with the reference model's ids. Label names that the model
    does not know are a one-line error."""
    import copy

    from hftl.data import load_classification_data
    from hftl.models import describe_loading, hub_options, read_config

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
        message = str(error)
        for flag in ("dataset_name", "dataset_config_name", "train_dir", "validation_dir",
                     "train_file", "validation_file", "max_train_samples", "max_eval_samples"):  # fmt: skip
            message = message.replace(f"--{flag}", f"--reference_{flag}")
        raise ConfigError(f"reference data: {message}") from error
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


def inner_model(model: nn.Module) -> nn.Module:
    """``model`` without its DDP / Accelerate wrappers and hftl's cached-feature wrapper."""
    from hftl.feature_cache import unwrap

    while hasattr(model, "module"):
        model = model.module
    return unwrap(model)


class ReferenceHead:
    """The reference task's head on the trained model's features (``guards: [lwf]``,
    ``[replay]``): where the trained model's family is one :mod:`hftl.feature_cache` knows the
    split of, ``logits(model, batch)`` runs the trained backbone on ``batch`` and the reference
    model's own head (frozen) on what it gives."""

    def __init__(self, reference: Reference, model: nn.Module, guard: str):
        from hftl.feature_cache import split_for

        self.reference = reference
        self.split = split_for(inner_model(model))
        if self.split is None:
            raise ConfigError(
                f"guards [{guard}]: hftl does not know where {type(inner_model(model)).__name__}'s "
                "backbone ends, so the reference head cannot read its features; use ewc or l2sp"
            )
        for name, param in reference.model.named_parameters():
            if name in reference.head:
                param.requires_grad_(False)  # the reference head is kept as it was

    def to(self, device) -> None:
        if next(self.reference.model.parameters()).device != device:
            self.reference.model.to(device)

    def logits(self, model: nn.Module, batch: dict) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        inner = inner_model(model)
        self.to(next(inner.parameters()).device)
        return self.split.head(self.reference.model, self.split.extract(inner, inputs))
