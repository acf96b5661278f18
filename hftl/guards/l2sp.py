"""``l2sp``: keep the pretrained weights near their starting point (L2-SP, Li et al. 2018).

Plain weight decay pulls every weight toward zero, which for a pretrained backbone means away
from what it knows. L2-SP pulls each weight outside the head toward its value when training
began, and keeps a plain L2 on the new head:

    penalty = l2sp_alpha / 2 * sum (w - w0)^2  (backbone)  +  l2sp_beta / 2 * sum w^2  (head)

It replaces weight decay, so ``weight_decay`` must be 0 with it. ``w0`` is taken when the trainer
is built, from the model as loaded: the pretrained weights, also on a resumed run (the checkpoint's
weights are put in later). Parameters that cannot train in the run (a frozen backbone, tensors the
layer map keeps frozen) are not copied. The defaults are the authors' (alpha 0.1, beta 0.01), which
they used with SGD; under AdamW the penalty's gradient is normalised with the task's, so its pull is
not the same, and hftl's forgetting study is where these values are checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hftl.guards.base import Guard


@dataclass
class L2SPArguments:
    l2sp_alpha: float = field(
        default=0.1,
        metadata={
            "help": "guards: [l2sp]: the pull of every weight outside the head toward its "
            "pretrained value, alpha/2 * sum (w - w0)^2."
        },
    )
    l2sp_beta: float = field(
        default=0.01,
        metadata={"help": "guards: [l2sp]: plain L2 on the new head, beta/2 * sum w^2."},
    )


class L2SP(Guard):
    name = "l2sp"
    summary = "pull the pretrained weights toward their starting values; plain L2 on the new head"
    arguments = L2SPArguments
    switched_by_name = True

    ranges = {"l2sp_alpha": (0, True), "l2sp_beta": (0, True)}

    def check(self, args):
        if self.active(args) and args.weight_decay > 0:
            raise ValueError(
                f"guards [l2sp] with --weight_decay {args.weight_decay}: L2-SP replaces decay "
                "toward zero (l2sp_beta is the head's L2); set --weight_decay 0"
            )

    def setup(self, model, args, reference=None):
        from hftl.layers import build_layer_map

        layer_map = build_layer_map(model)
        head = set(layer_map.names_at(layer_map.head_depth))
        frozen_backbone = args.strategy_object.frozen_backbone
        self.start, self.head = [], []
        for name, param in model.named_parameters():
            if name in head:
                self.head.append(param)
            elif not frozen_backbone and name not in layer_map.kept_frozen:
                self.start.append((param, param.detach().clone()))
        self.alpha, self.beta = args.l2sp_alpha, args.l2sp_beta

    def penalty(self, model, inputs, outputs):
        terms = []
        if self.alpha:
            moved = [((p - p0.to(p.device)) ** 2).sum() for p, p0 in self.start if p.requires_grad]
            if moved:
                terms.append(self.alpha / 2 * torch.stack(moved).sum())
        if self.beta:
            head = [(p**2).sum() for p in self.head if p.requires_grad]
            if head:
                terms.append(self.beta / 2 * torch.stack(head).sum())
        return torch.stack(terms).sum() if terms else None

    def run_info(self, args):
        return {"l2sp": {"alpha": args.l2sp_alpha, "beta": args.l2sp_beta}}

    def describe(self, training):
        settings = training.get("l2sp") or {}
        return (
            f"L2-SP kept the pretrained weights near their starting values (alpha "
            f"{settings.get('alpha')}: alpha/2 times the squared distance, instead of weight "
            f"decay toward zero) with plain L2 on the new head (beta {settings.get('beta')})."
        )
