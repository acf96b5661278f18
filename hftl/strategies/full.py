"""``full``: every layer trains (with layer-wise LR decay where ``layer_decay`` < 1)."""

from hftl.strategies.base import Knob, Strategy


class Full(Strategy):
    name = "full"
    summary = "everything trains (add layer_decay < 1 for layer-wise LR decay)"
    knobs = {"layer_decay": Knob(0.5, 1.0), "head_lr_multiplier": Knob(1.0, 100.0, log=True)}

    def min_depth(self, num_blocks, *, num_trainable_layers=None, stage=0):
        return 0

    def describe(self, training, lr_note):
        return f"Full fine-tuning: every layer was trained.{lr_note}"
