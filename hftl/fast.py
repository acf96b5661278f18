"""Speed defaults that need more than a TrainingArguments switch, and the precision a run trains in.

``channels_last`` memory format for convolutional networks with batch norm (EfficientNet, ResNet,
MobileNet, RegNet, ...): the weights and the ``pixel_values`` are laid out NHWC, which the CPU
(oneDNN) and GPU (cuDNN) convolution kernels prefer. ``--channels_last`` decides; left unset,
it is on for models with ``BatchNorm2d`` layers and off otherwise: on the 2-core CPU of
``docs/speed_defaults.md`` it made training steps of EfficientNet-Lite0 about 1.4x and of
ResNet-18/50 about 1.1x faster, and did nothing for ConvNeXt (layer norm) or ViT (one
convolution). Regenerate that table with ``python scripts/speed_defaults.py``.
"""

from __future__ import annotations

import torch
from torch import nn


def wants_channels_last(model: nn.Module, setting: bool | None) -> bool:
    """``setting`` if given, else whether ``model`` is a batch-norm CNN."""
    if setting is not None:
        return setting
    return any(isinstance(module, nn.BatchNorm2d) for module in model.modules())


def to_channels_last(batch: dict) -> dict:
    """``pixel_values`` (4-D) in channels-last memory format; everything else unchanged."""
    pixels = batch.get("pixel_values") if isinstance(batch, dict) else None
    if torch.is_tensor(pixels) and pixels.dim() == 4:
        batch["pixel_values"] = pixels.contiguous(memory_format=torch.channels_last)
    return batch


class ChannelsLastCollator:
    """A data collator whose batches carry ``pixel_values`` channels-last (moving a batch to
    the device keeps the layout)."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples):
        return to_channels_last(self.collator(examples))


def mixed_precision(args) -> str:
    """The precision the run trains in: "bf16", "fp16" or "no".

    ``--bf16`` / ``--fp16``, else the launch's: ``accelerate launch`` with a config that says
    ``mixed_precision: bf16`` (all of ``recipes/accelerate/``'s GPU configs) sets
    ACCELERATE_MIXED_PRECISION, which TrainingArguments reads into ``args.mixed_precision`` and
    the Accelerator trains in, while ``args.bf16`` stays False.
    """
    if args.fp16:
        return "fp16"
    if args.bf16:
        return "bf16"
    return getattr(args, "mixed_precision", None) or "no"


def autocast_dtype(args) -> torch.dtype | None:
    """The autocast dtype of :func:`mixed_precision` (None: full precision)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision(args))
