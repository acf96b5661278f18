"""What a transfer strategy is: how it wraps and freezes the model, which callbacks it adds, its
arguments and its sentence in the model card. One module per strategy registers one of these."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import nn

from hftl.freezing import set_trainable
from hftl.layers import LayerMap

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Knob:
    """One option ``hftl tune`` searches: a number in [``low``, ``high``] (on a log scale where
    ``log``; whole numbers where ``integer``; ``high=None``: the model's number of blocks), or one
    of ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple = ()


# hftl advise's learning rate for a new head over the pretrained layers' (the transfer study's
# arms, docs/transfer_study.md)
ADVISED_HEAD_LR_MULTIPLIER = 10.0


class Strategy:
    """A transfer-learning strategy. Subclasses set ``name`` and ``summary`` and override what
    they change.

    Attributes:
        name: the value of ``--strategy``.
        summary: one line for ``--help`` and the docs.
        arguments: a dataclass whose fields become ``TransferTrainingArguments`` fields (or None).
        frozen_backbone: the backbone never trains, so its features can be computed once.
        optimizer_holds_frozen: frozen parameters go into the optimizer from the start (they are
            unfrozen during training).
        needs_block_count: :meth:`check_blocks` wants the model's number of blocks at parse time.
        moves_pretrained_weights: the pretrained weights themselves train (not under a frozen
            backbone or adapters).
        probes_head: before training, the new head is fitted by a linear probe on the starting
            backbone's features (:func:`hftl.feature_cache.probe_head`).
        ranges: ``{option: (minimum, whether the minimum itself is allowed)}`` or
            ``{option: (minimum, maximum)}`` for its numeric options, checked in one place
            (:class:`~hftl.config.TransferTrainingArguments`) and refused with ``--option value:
            must be >= minimum`` / ``must be in [minimum, maximum]``; guards declare theirs the
            same way.
        learning_rate_scale: its learning rate over the task's base rate (the task's
            ``learning_rate``, set for fine-tuning pretrained layers): where ``hftl advise``
            starts and the middle of the range ``hftl tune`` searches.
        knobs: ``{option: Knob}``: what ``hftl tune`` searches for this strategy besides the
            learning rate and weight decay.
    """

    name: str = ""
    summary: str = ""
    arguments: type | None = None
    frozen_backbone: bool = False
    optimizer_holds_frozen: bool = False
    needs_block_count: bool = False
    moves_pretrained_weights: bool = True
    probes_head: bool = False
    ranges: dict[str, tuple] = {}
    learning_rate_scale: float = 1.0
    knobs: dict[str, Knob] = {}

    def base_learning_rate(self, task) -> float:
        """The learning rate this strategy starts from on ``task`` (a registered Task)."""
        return task.learning_rate * self.learning_rate_scale

    def advised(self, task, num_blocks: int) -> tuple[dict, dict]:
        """What ``hftl advise`` starts this strategy with on ``task`` for a model of
        ``num_blocks`` blocks, besides its learning rate (:meth:`base_learning_rate`) and the
        epochs: ``(settings, {setting: why})``, with why the learning rate is what it is under
        "learning_rate". By default the pretrained layers train at the base rate and the new
        head at ADVISED_HEAD_LR_MULTIPLIER times it."""
        return {"head_lr_multiplier": ADVISED_HEAD_LR_MULTIPLIER}, {
            "learning_rate": f"the task's base rate {self.base_learning_rate(task):g} for the "
            f"pretrained layers, {ADVISED_HEAD_LR_MULTIPLIER:g}x for the new head, which starts "
            "from random"
        }

    def check(self, args, selected: bool) -> None:
        """Validate ``args`` (a ``TransferTrainingArguments``); ``selected``: this is
        ``args.strategy``. Raise ``ValueError`` with a one-line message."""

    def check_blocks(self, args, num_blocks: int, model_name: str) -> None:
        """Validate ``args`` against the model's number of blocks (``ValueError``)."""

    def min_depth(self, num_blocks: int, *, num_trainable_layers: int | None = None,
                  stage: int = 0) -> int:  # fmt: skip
        """The lowest depth that trains (0 = everything, ``num_blocks + 1`` = head only)."""
        raise ValueError(f"strategy {self.name!r} does not freeze by depth")

    def wrap(self, model: nn.Module, args) -> nn.Module:
        """The model to train (LoRA wraps it with PEFT); before the layer map is built."""
        return model

    def freeze(self, model: nn.Module, args, layer_map: LayerMap) -> None:
        """Set which parameters train at the start."""
        self.check_blocks(args, layer_map.num_blocks, type(model).__name__)
        self.freeze_by_depth(
            model, layer_map, num_trainable_layers=getattr(args, "num_trainable_layers", None)
        )

    def freeze_by_depth(self, model: nn.Module, layer_map: LayerMap, *,
                        num_trainable_layers: int | None = None) -> int:  # fmt: skip
        """Train the depths from :meth:`min_depth` up (stage 0) and freeze the rest; returns
        that depth."""
        min_depth = self.min_depth(layer_map.num_blocks, num_trainable_layers=num_trainable_layers)
        counts = set_trainable(model, layer_map, min_depth)
        logger.info(
            "strategy %s: depths >= %d train (%d tensors), %d tensors frozen",
            self.name, min_depth, counts["trainable"], counts["frozen"],
        )  # fmt: skip
        return min_depth

    def callbacks(self, args, layer_map: LayerMap) -> list:
        """``TrainerCallback``\\ s the strategy needs (e.g. the unfreezing schedule)."""
        return []

    def run_info(self, args, model: nn.Module) -> dict:
        """Strategy-specific facts for ``run_info.json`` / the card (under ``training``)."""
        return {}

    def describe(self, training: dict, lr_note: str) -> str:
        """One or two sentences for the model card; ``lr_note`` describes LLRD / the head LR."""
        return f"Strategy `{self.name}`.{lr_note}"
