"""``gradual``: the head first, then one more block every ``unfreeze_every`` epochs or steps,
top-down, until everything trains (ULMFiT's gradual unfreezing).

Under DDP every parameter is trainable when DDP wraps the model (so all of them are registered
with its reducer and stay synchronised once unfrozen) and is in the optimizer from the start;
:class:`GradualUnfreezingCallback` freezes in ``on_train_begin``, after wrapping. Frozen
parameters get no gradient, so AdamW skips them. This needs ``ddp_find_unused_parameters=True``,
which is set.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainerCallback

from hftl.freezing import set_trainable
from hftl.layers import LayerMap
from hftl.strategies.base import Knob, Strategy

logger = logging.getLogger(__name__)


@dataclass
class GradualArguments:
    unfreeze_every: int = field(
        default=1, metadata={"help": "strategy=gradual: unfreeze one more block every N units."}
    )
    unfreeze_unit: Literal["epoch", "step"] = field(
        default="epoch", metadata={"help": "strategy=gradual: the unit of unfreeze_every."}
    )


def gradual_stage(progress: int, every: int) -> int:
    """Stage of gradual unfreezing after ``progress`` epochs or steps, unfreezing every ``every``."""
    if every < 1:
        raise ValueError(f"unfreeze_every must be >= 1, got {every}")
    return max(0, progress) // every


class GradualUnfreezingCallback(TrainerCallback):
    """Unfreeze one more block, top-down, every ``every`` epochs or steps.

    Stage 0 trains the head only; stage ``s`` trains the top ``s`` blocks and the head; from stage
    ``L + 1`` on, the embeddings train too. The stage is computed from the trainer state, so a run
    resumed from a checkpoint continues at the right stage.

    Attributes:
        history: ``(global_step, epoch, min_trainable_depth)`` each time the frozen set changed.
    """

    def __init__(self, layer_map: LayerMap, every: int = 1, unit: str = "epoch"):
        if unit not in ("epoch", "step"):
            raise ValueError(f"unfreeze_unit must be 'epoch' or 'step', got {unit!r}")
        gradual_stage(0, every)  # validates `every`
        self.layer_map, self.every, self.unit = layer_map, every, unit
        self.min_depth: int | None = None
        self.history: list[tuple[int, float, int]] = []

    def stage(self, state) -> int:
        if self.unit == "step":
            progress = state.global_step
        else:  # at an epoch's start state.epoch is the number of epochs done (maybe fractional on resume)
            progress = math.floor((state.epoch or 0.0) + 1e-6)
        return gradual_stage(progress, self.every)

    def _update(self, model, state) -> None:
        min_depth = Gradual().min_depth(self.layer_map.num_blocks, stage=self.stage(state))
        if min_depth == self.min_depth:
            return
        set_trainable(model, self.layer_map, min_depth)
        self.min_depth = min_depth
        self.history.append((state.global_step, state.epoch or 0.0, min_depth))
        if state.is_world_process_zero:
            logger.info(
                "gradual unfreezing at step %d (epoch %.2f): depths >= %d now train (of 0..%d)",
                state.global_step,
                state.epoch or 0.0,
                min_depth,
                self.layer_map.head_depth,
            )

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._update(model, state)

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        if self.unit == "epoch":
            self._update(model, state)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if self.unit == "step":
            self._update(model, state)


class Gradual(Strategy):
    name = "gradual"
    summary = "head first, then one more block every unfreeze_every epochs/steps, top-down"
    arguments = GradualArguments
    optimizer_holds_frozen = True
    knobs = {"unfreeze_every": Knob(1, 3, integer=True)}

    def check(self, args, selected):
        if args.unfreeze_every < 1:
            raise ValueError(f"unfreeze_every must be >= 1, got {args.unfreeze_every}")
        if selected and args.ddp_find_unused_parameters is False:
            raise ValueError(
                "strategy=gradual needs ddp_find_unused_parameters=true under DDP (frozen blocks get "
                "no gradient); leave it unset or set it to true"
            )

    def min_depth(self, num_blocks, *, num_trainable_layers=None, stage=0):
        return max(0, num_blocks + 1 - max(0, stage))

    def freeze(self, model, args, layer_map):
        # Everything trainable now, so DDP registers every parameter and the optimizer holds them
        # all; the callback freezes in on_train_begin, after wrapping.
        set_trainable(model, layer_map, 0)
        if args.ddp_find_unused_parameters is None:
            args.ddp_find_unused_parameters = True

    def callbacks(self, args, layer_map):
        return [
            GradualUnfreezingCallback(layer_map, every=args.unfreeze_every, unit=args.unfreeze_unit)
        ]

    def run_info(self, args, model):
        return {"unfreeze_every": args.unfreeze_every, "unfreeze_unit": args.unfreeze_unit}

    def describe(self, training, lr_note):
        return (
            "Gradual unfreezing: training started with the new head alone and unfroze one more "
            f"block, top-down, every {training['unfreeze_every']} {training['unfreeze_unit']}(s)."
            f"{lr_note}"
        )
