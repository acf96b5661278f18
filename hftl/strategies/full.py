"""``full``: every layer trains (with layer-wise LR decay where ``layer_decay`` < 1)."""

from hftl.strategies.base import Knob, Strategy

# hftl advise's LLRD: the lowest block trains at this share of the top block's rate
LOWEST_BLOCK_SHARE = 0.1


def layer_decay_for(num_blocks: int) -> float:
    """LLRD factor whose lowest block gets :data:`LOWEST_BLOCK_SHARE` of the top block's rate."""
    if num_blocks <= 1:
        return 1.0
    return round(LOWEST_BLOCK_SHARE ** (1 / (num_blocks - 1)), 2)


class Full(Strategy):
    name = "full"
    summary = "everything trains (add layer_decay < 1 for layer-wise LR decay)"
    knobs = {"layer_decay": Knob(0.5, 1.0), "head_lr_multiplier": Knob(1.0, 100.0, log=True)}

    def min_depth(self, num_blocks, *, num_trainable_layers=None, stage=0):
        return 0

    def advised(self, task, num_blocks):
        settings, reasons = super().advised(task, num_blocks)
        settings["layer_decay"] = decay = layer_decay_for(num_blocks)
        reasons["layer_decay"] = (
            f"{decay} over {num_blocks} blocks: the lowest block trains at about "
            f"{LOWEST_BLOCK_SHARE:.0%} of the top's rate, keeping the general low-level features"
        )
        return settings, reasons

    def describe(self, training, lr_note):
        return f"Full fine-tuning: every layer was trained.{lr_note}"
