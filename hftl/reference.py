"""The reference task: what a model knew before this run, to protect and to measure forgetting on.

A model fine-tuned on task A and now fine-tuned on task B forgets A. ``--reference_*`` names task
A: a model that answers it (``reference_model_name_or_path``, with its own head and labels;
default: ``--model_name_or_path`` itself, the usual case of fine-tuning a fine-tuned model
further) and its data, in the same forms as the main data (``--reference_dataset_name``,
``--reference_train_dir`` / ``--reference_validation_dir``, ``--reference_train_file`` /
``--reference_validation_file``). With it:

* the run measures forgetting: the reference model's score on the reference validation data
  (its label shape's main metric: accuracy for classes, micro-F1 for several labels, RMSE for
  numbers) before training, and after it, with the trained backbone under the reference head;
  the change is in ``run_info.json`` (``reference``) and the card;
* guards that need the old task use it (``ewc``: the Fisher information of the starting weights
  on the reference training data).

The reference model must share the trained model's backbone tensor for tensor (names and shapes):
its head is the only part that differs.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from dataclasses import field

import numpy as np
import torch
from torch import nn

from hftl.data import DataArguments
from hftl.errors import ConfigError
from hftl.families import split_for
from hftl.feature_cache import unwrap
from hftl.layers import build_layer_map
from hftl.shapes import LabelSpec, shape_for_problem_type

logger = logging.getLogger(__name__)


# The main data options the reference task has too, as --reference_<name>; its defaults where
# they differ from the main data's (what the guards read: a sample is enough).
REFERENCE_DATA_FIELDS = ("dataset_name", "dataset_config_name", "train_dir", "validation_dir",
                         "train_file", "validation_file", "max_train_samples", "max_eval_samples")  # fmt: skip
REFERENCE_DEFAULTS = {"max_train_samples": 2000}


def _reference_arguments() -> type:
    """The dataclass of the reference task's options: ``reference_model_name_or_path`` and the
    :data:`REFERENCE_DATA_FIELDS` of :class:`~hftl.data.DataArguments` under ``reference_``."""
    types = typing.get_type_hints(DataArguments)
    data_fields = {f.name: f for f in dataclasses.fields(DataArguments)}
    specs = [(
        "reference_model_name_or_path", str | None,
        field(default=None, metadata={
            "help": "A model that answers the reference task, with its own head and labels "
            "(default: --model_name_or_path, when reference data is given)."}),
    )]  # fmt: skip
    for name in REFERENCE_DATA_FIELDS:
        source = data_fields[name]
        default = REFERENCE_DEFAULTS.get(name, source.default)
        help_text = f"Reference task: {source.metadata.get('help', name)}"
        if name in REFERENCE_DEFAULTS:
            help_text += f" (default here: {default}; none: all)"
        specs.append((f"reference_{name}", types[name],
                      field(default=default, metadata={"help": help_text})))  # fmt: skip

    def given(self) -> bool:
        return bool(self.reference_dataset_name or self.reference_train_dir
                    or self.reference_train_file)  # fmt: skip

    def data_arguments(self) -> DataArguments:
        """The reference data as :class:`~hftl.data.DataArguments` (read like the main data)."""
        return DataArguments(**{n: getattr(self, f"reference_{n}") for n in REFERENCE_DATA_FIELDS})

    return dataclasses.make_dataclass(
        "ReferenceArguments",
        specs,
        namespace={
            "given": property(given),
            "data_arguments": data_arguments,
            "__doc__": "The reference task (the one forgetting is measured on).",
        },  # fmt: skip
    )


ReferenceArguments = _reference_arguments()
ReferenceArguments.__module__ = __name__


def reference_flags(message: str) -> str:
    """A message about the main data's flags, about the reference task's instead."""
    for name in REFERENCE_DATA_FIELDS:
        message = message.replace(f"--{name}", f"--reference_{name}")
    return message


class Reference:
    """The reference task loaded: ``model`` (its own head), ``labels``, ``train`` / ``eval``
    datasets in model format and their ``collator``, ``spec`` (its labels' shape: what the
    guards distil, the Fisher's likelihood, the metric; default: classes named ``labels``);
    ``before`` (its validation score as loaded: the shape's main metric, accuracy for classes)
    and, once :meth:`measure` ran, ``after``."""

    def __init__(self, model: nn.Module, labels: list[str], train, eval, collator, name: str,
                 spec: LabelSpec | None = None):  # fmt: skip
        self.model, self.labels, self.train, self.eval = model, labels, train, eval
        self.collator, self.name = collator, name
        self.spec = spec or LabelSpec(shape=shape_for_problem_type(None), names=list(labels))
        self.metric = self.spec.shape.default_metric
        layer_map = build_layer_map(model)
        self.head = set(layer_map.names_at(layer_map.head_depth))
        self.before = self.score()
        self.after: float | None = None

    def check_backbone(self, model: nn.Module) -> None:
        """The reference model's backbone is ``model``'s, name for name and shape for shape."""
        ours = {n: t.shape for n, t in self.model.state_dict().items() if n not in self.head}
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
    def score(self) -> float:
        """The reference model's score on the reference validation data: its label shape's main
        metric (accuracy for classes, micro-F1 for several labels, RMSE for numbers)."""
        loader = torch.utils.data.DataLoader(self.eval, batch_size=64, collate_fn=self.collator)
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        logits, labels = [], []
        try:
            for batch in loader:
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                labels.append(batch.pop("labels").cpu().numpy())
                logits.append(self.model(**batch).logits.float().cpu().numpy())
        finally:
            self.model.train(was_training)
        if not logits:
            return 0.0
        return float(self.spec.report(np.concatenate(logits), np.concatenate(labels))[self.metric])

    def measure(self, model: nn.Module) -> dict:
        """The reference score with ``model``'s backbone under the reference head: the record
        for ``run_info.json`` (``<metric>_before``, ``<metric>_after``, ``forgetting``: how much
        worse it got, before - after for accuracy, after - before for RMSE)."""
        state = {n: t for n, t in model.state_dict().items() if n not in self.head}
        missing = set(self.model.state_dict()) - self.head - set(state)
        if missing:
            raise RuntimeError(f"reference: the trained model lacks {sorted(missing)[:3]}")
        self.model.load_state_dict(state, strict=False)
        self.after = self.score()
        lost = self.before - self.after  # positive: worse after training
        if self.metric in self.spec.shape.lower_is_better:
            lost = -lost
        record = {
            "model": self.name,
            "labels": self.labels,
            "shape": self.spec.shape.name,
            "metric": self.metric,
            "validation_rows": len(self.eval),
            f"{self.metric}_before": round(self.before, 4),
            f"{self.metric}_after": round(self.after, 4),
            "forgetting": round(lost, 4),
        }
        logger.info(
            "reference task: %s %.4f before, %.4f after (forgetting %.4f)",
            self.metric, self.before, self.after, lost,
        )  # fmt: skip
        return record


def inner_model(model: nn.Module) -> nn.Module:
    """``model`` without its DDP / Accelerate wrappers and hftl's cached-feature wrapper."""
    while hasattr(model, "module"):
        model = model.module
    return unwrap(model)


class ReferenceHead:
    """The reference task's head on the trained model's features (``guards: [lwf]``,
    ``[replay]``): where the trained model's family is one :mod:`hftl.feature_cache` knows the
    split of, ``logits(model, batch)`` runs the trained backbone on ``batch`` and the reference
    model's own head (frozen) on what it gives."""

    def __init__(self, reference: Reference, model: nn.Module, guard: str):
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
