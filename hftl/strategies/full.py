"""``full``: every layer trains (with layer-wise LR decay where ``layer_decay`` < 1)."""

from hftl.strategies.base import Strategy


class Full(Strategy):
    name = "full"
    summary = "everything trains (add layer_decay < 1 for layer-wise LR decay)"

    def min_depth(self, num_blocks, *, num_trainable_layers=None, stage=0):
        return 0

    def describe(self, training, lr_note):
        return f"Full fine-tuning: every layer was trained.{lr_note}"
