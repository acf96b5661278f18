"""What a catastrophic-forgetting guard is: a switch in the arguments that adds callbacks and/or a
penalty to the training loss. One module per guard registers one of these."""

from __future__ import annotations

import torch
from torch import nn


class Guard:
    """A guard against forgetting (early stopping, L2-SP, EWC, LwF, ...).

    Attributes:
        name: the guard's name (its arguments turn it on).
        summary: one line for the docs.
        arguments: a dataclass whose fields become ``TransferTrainingArguments`` fields.
    """

    name: str = ""
    summary: str = ""
    arguments: type | None = None
    # turned on by naming it in ``guards: [...]`` (its options then have working defaults);
    # False: its own option turns it on (early_stopping_patience > 0)
    switched_by_name: bool = False
    # needs the reference task (hftl.reference: --reference_*), handed to setup; a run without
    # one is refused before setup (TransferTrainer)
    needs_reference: bool = False
    # acts on the pretrained weights, so a strategy that leaves them as they are (frozen
    # backbone, adapters) is refused (TransferTrainingArguments)
    needs_moving_weights: bool = False
    # {option: (minimum, whether the minimum itself is allowed) or (minimum, maximum)}: checked
    # for every guard, on or off, by TransferTrainingArguments (``--option value: must be ...``)
    ranges: dict[str, tuple] = {}

    def active(self, args) -> bool:
        """Whether ``args`` turn this guard on."""
        return self.switched_by_name and self.name in (getattr(args, "guards", None) or [])

    def check(self, args) -> None:
        """Validate ``args``; raise ``ValueError`` with a one-line message."""

    def setup(self, model: nn.Module, args, reference=None) -> None:
        """Called once the model to train is final (e.g. to keep a copy of the pretrained
        weights), before the Trainer is built; ``reference``: the run's
        :class:`~hftl.reference.Reference` task, or None. Each trainer gets its own copy of the guard
        (:func:`hftl.guards.active_guards`), so what ``setup`` keeps belongs to that run."""

    def callbacks(self, args) -> list:
        return []

    def penalty(self, model: nn.Module, inputs: dict, outputs) -> torch.Tensor | None:
        """A term added to the task loss of each training step (None: nothing)."""
        return None

    def after_training(self, trainer) -> None:
        """Called by :meth:`hftl.TransferTrainer.train` on every process once training has
        ended (and the best checkpoint, if kept, is loaded), before the run is evaluated and
        saved (e.g. to mix the weights with the starting ones)."""

    def run_info(self, args) -> dict:
        """Facts for ``run_info.json`` / the card (under ``training``)."""
        return {}

    def describe(self, training: dict) -> str | None:
        """A sentence for the model card from ``run_info.json``'s ``training`` (the guard's own
        ``run_info`` is in it), or None."""
        return None
