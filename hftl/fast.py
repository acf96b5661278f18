"""Speed defaults that need more than a TrainingArguments switch.

``channels_last`` memory format for convolutional networks with batch norm (EfficientNet, ResNet,
MobileNet, RegNet, ...): the weights and the ``pixel_values`` are laid out NHWC, which the CPU
(oneDNN) and GPU (cuDNN) convolution kernels prefer. ``--channels_last`` decides; left unset,
it is on for models with ``BatchNorm2d`` layers and off otherwise. Measured on a 2-core x86 CPU,
one fp32 training step at 112 px, batch 32 (``docs/benchmarks.md`` has the command):
EfficientNet-Lite0 1.55x, ResNet-18 1.09x, ResNet-50 1.10x faster, but ConvNeXt (layer norm, no
batch norm) 0.80x and ViT has a single convolution, hence the rule.
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
