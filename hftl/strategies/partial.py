"""``partial``: the top ``num_trainable_layers`` blocks and the head train; the rest is frozen."""

import logging
import math
from dataclasses import dataclass, field

from hftl.strategies.base import Knob, Strategy

logger = logging.getLogger(__name__)


@dataclass
class PartialArguments:
    num_trainable_layers: int | None = field(
        default=None,
        metadata={"help": "strategy=partial: how many top blocks train (plus the head)."},
    )


def check_num_trainable_layers(
    num_trainable_layers: int | None, num_blocks: int, model_name: str = "the model"
) -> None:
    if num_trainable_layers is None:
        raise ValueError(
            "strategy 'partial' needs num_trainable_layers (how many top blocks train)"
        )
    if not 0 <= num_trainable_layers <= num_blocks:
        raise ValueError(
            f"num_trainable_layers={num_trainable_layers} but {model_name} has {num_blocks} blocks: "
            f"use 0..{num_blocks} (or strategy 'full' to train everything)"
        )


class Partial(Strategy):
    name = "partial"
    summary = "the top num_trainable_layers blocks and the head train"
    arguments = PartialArguments
    needs_block_count = True
    knobs = {
        "num_trainable_layers": Knob(1, None, integer=True),  # up to every block
        "head_lr_multiplier": Knob(1.0, 100.0, log=True),
    }

    def check(self, args, selected):
        if not selected:
            if args.num_trainable_layers is not None:
                logger.warning(
                    "num_trainable_layers=%s is ignored: it applies to strategy=partial, not %s",
                    args.num_trainable_layers,
                    args.strategy,
                )
            return
        if args.num_trainable_layers is None:
            raise ValueError(
                "strategy=partial needs num_trainable_layers (how many top blocks train)"
            )
        if args.num_trainable_layers < 0:
            raise ValueError(f"num_trainable_layers must be >= 0, got {args.num_trainable_layers}")

    def check_blocks(self, args, num_blocks, model_name):
        check_num_trainable_layers(args.num_trainable_layers, num_blocks, model_name)

    def advised(self, task, num_blocks):
        settings, reasons = super().advised(task, num_blocks)
        settings["num_trainable_layers"] = max(1, math.ceil(num_blocks / 4))
        reasons["num_trainable_layers"] = (
            f"the top quarter of the {num_blocks} blocks, the most task-specific ones"
        )
        return settings, reasons

    def min_depth(self, num_blocks, *, num_trainable_layers=None, stage=0):
        check_num_trainable_layers(num_trainable_layers, num_blocks)
        return num_blocks + 1 - num_trainable_layers

    def run_info(self, args, model):
        return {"num_trainable_layers": args.num_trainable_layers}

    def describe(self, training, lr_note):
        return (
            f"Partial fine-tuning: the top {training['num_trainable_layers']} block(s) and a new "
            f"head were trained; the layers below stayed frozen.{lr_note}"
        )
