"""``lora``: PEFT LoRA adapters in the blocks, the new head trained in full.

The model is wrapped with ``peft.get_peft_model`` (a ``LoraConfig`` over the blocks' attention
query/value projections by default, else every Linear, else every ungrouped Conv2d layer); the
head's modules are ``modules_to_save``, so they train fully and are saved with the adapter. With
``merge_lora`` the run also saves the adapter merged into the base weights, a plain model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from torch import nn

from hftl.families import family_of
from hftl.freezing import keep_frozen_norms_in_eval
from hftl.layers import LayerMap, build_layer_map
from hftl.strategies.base import Knob, Strategy

logger = logging.getLogger(__name__)


@dataclass
class LoraArguments:
    lora_r: int = field(default=8, metadata={"help": "strategy=lora: rank of the LoRA update."})
    lora_alpha: int = field(default=16, metadata={"help": "strategy=lora: LoRA scaling numerator."})
    lora_dropout: float = field(
        default=0.1, metadata={"help": "strategy=lora: dropout on the LoRA path."}
    )
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "strategy=lora: module names to adapt (default: attention query/value "
            "projections, else all Linear, else all Conv2d layers in the blocks)."
        },
    )
    merge_lora: bool = field(
        default=True,
        metadata={
            "help": "strategy=lora: save the adapter merged into the base weights (a plain "
            "model) as well as the adapter alone under adapter/. false: save the adapter only."
        },
    )


def head_module_names(model: nn.Module, layer_map: LayerMap | None = None) -> list[str]:
    """Names of the modules that own the head's parameters (for PEFT's ``modules_to_save``)."""
    layer_map = layer_map or build_layer_map(model)
    head = set(layer_map.names_at(layer_map.head_depth))
    owners = set()
    for name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            if (f"{name}.{param_name}" if name else param_name) in head:
                owners.add(name)
    return sorted(owners)


def default_lora_targets(model: nn.Module, layer_map: LayerMap | None = None) -> list[str]:
    """LoRA targets inside the blocks: the family's attention projections
    (:attr:`hftl.families.base.Family.lora_targets`, e.g. query / value) where the model has them,
    else every Linear layer, else (CNNs) every ungrouped Conv2d layer."""
    layer_map = layer_map or build_layer_map(model)
    in_blocks = {n for n, d in layer_map.depths.items() if 1 <= d <= layer_map.num_blocks}
    candidates: dict[type, list[str]] = {nn.Linear: [], nn.Conv2d: []}
    for name, module in model.named_modules():
        kind = type(module) if type(module) in candidates else None
        if kind is nn.Conv2d and module.groups > 1:
            continue  # depthwise / grouped: PEFT's LoRA needs the rank divisible by the groups
        if kind is not None and f"{name}.weight" in in_blocks:
            candidates[kind].append(name)
    family = family_of(model)
    encoder = family.encoder(model)
    names = (family_of(encoder) if encoder is not None else family).lora_targets
    attention = [n for n in candidates[nn.Linear] if n.rsplit(".", 1)[-1] in names]
    targets = attention or candidates[nn.Linear] or candidates[nn.Conv2d]
    if not targets:
        raise ValueError(
            f"found no Linear or Conv2d layer in the blocks of {type(model).__name__}; set lora_target_modules"
        )
    return targets


def wrap_with_lora(model: nn.Module, args) -> nn.Module:
    """A ``PeftModel``: LoRA on ``args.lora_target_modules`` (default: :func:`default_lora_targets`),
    the new head trained in full and saved with the adapter (``modules_to_save``)."""
    from peft import LoraConfig, get_peft_model

    layer_map = build_layer_map(model)
    targets = args.lora_target_modules or default_lora_targets(model, layer_map)
    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=targets,
        modules_to_save=head_module_names(model, layer_map),
    )
    peft_model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    logger.info(
        "LoRA r=%d on %d modules; %s of %s parameters train",
        args.lora_r,
        len(targets),
        f"{trainable:,}",
        f"{total:,}",
    )
    return peft_model


class Lora(Strategy):
    name = "lora"
    summary = "PEFT LoRA adapters in the blocks + the full new head"
    arguments = LoraArguments
    moves_pretrained_weights = False  # adapters train; the pretrained weights stay as they are
    ranges = {"lora_alpha": (0, False), "lora_dropout": (0, True)}
    knobs = {"lora_r": Knob(choices=(4, 8, 16, 32)), "lora_alpha": Knob(choices=(8, 16, 32, 64))}

    def base_learning_rate(self, task):
        # adapters start at zero and need larger steps: the task's own multiplier (measured)
        return task.learning_rate * task.lora_lr_multiplier

    def advised(self, task, num_blocks):
        return {"lora_r": 8}, {
            "learning_rate": f"{task.lora_lr_multiplier:g}x the task's base rate "
            f"{task.learning_rate:g}: adapters start at zero and need larger steps (the transfer "
            "study's LoRA arm)"
        }

    def check(self, args, selected):
        if args.lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {args.lora_r}")

    def wrap(self, model, args):
        return model if hasattr(model, "peft_config") else wrap_with_lora(model, args)

    def freeze(self, model, args, layer_map):
        keep_frozen_norms_in_eval(
            model
        )  # PEFT froze the base model; frozen BatchNorm stays in eval

    def run_info(self, args, model):
        peft_config = getattr(model, "peft_config", {}).get("default")
        targets = sorted(getattr(peft_config, "target_modules", None) or [])
        return {
            "lora": {
                "r": args.lora_r,
                "alpha": args.lora_alpha,
                "dropout": args.lora_dropout,
                "target_modules": targets or args.lora_target_modules,
                "merged": bool(args.merge_lora),
            }
        }

    def describe(self, training, lr_note):
        return (
            "LoRA: the pretrained weights stayed frozen; low-rank adapters and a new head were "
            "trained."
        )
