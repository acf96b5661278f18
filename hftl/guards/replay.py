"""``replay``: rehearse the reference task (:mod:`hftl.reference`) while learning the new one.

Every training step also draws ``replay_ratio`` reference training rows per row of the new
task's batch (at least one) and adds the reference task's loss on them: the reference model's
own head (kept frozen) on the trained backbone, with the rows' own labels. Weighted by the
ratio, the step's loss is the mean over every row it saw, new and replayed:

    loss = task loss + R / B * cross-entropy(reference head(backbone(reference rows)))

The rows a step draws are a function of (seed, step, process), so a resumed run replays what the
uninterrupted one would have, and each DDP process replays its own rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import TrainerCallback

from hftl.guards.base import Guard


@dataclass
class ReplayArguments:
    replay_ratio: float = field(
        default=0.25,
        metadata={"help": "guards: [replay]: reference rows replayed per row of the new task."},
    )


class _Step(TrainerCallback):
    def __init__(self, guard: Replay):
        self.guard = guard

    def on_step_begin(self, args, state, control, **kwargs):
        self.guard.step = state.global_step


class Replay(Guard):
    name = "replay"
    summary = "mix reference-task rows (their own labels and head) into every training step"
    arguments = ReplayArguments
    switched_by_name = True
    needs_reference = True
    needs_moving_weights = True

    ranges = {"replay_ratio": (0, False)}

    def setup(self, model, args, reference=None):
        from hftl.reference import ReferenceHead

        self.head = ReferenceHead(reference, model, self.name)
        self.ratio, self.seed, self.rank = args.replay_ratio, args.seed, args.process_index
        self.step = 0
        self.drawn: list[int] = []  # the reference rows of the last step (for inspection)

    def callbacks(self, args):
        return [_Step(self)]

    def rows_for(self, step: int, batch_size: int) -> list[int]:
        """The reference rows step ``step`` replays next to ``batch_size`` new rows."""
        reference = self.head.reference
        count = min(len(reference.train), max(1, round(self.ratio * batch_size)))
        generator = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + step) * 1_009 + self.rank
        )
        return torch.randperm(len(reference.train), generator=generator)[:count].tolist()

    def penalty(self, model, inputs, outputs):
        batch_size = len(inputs["labels"])
        reference = self.head.reference
        self.drawn = self.rows_for(self.step, batch_size)
        batch = reference.collator([reference.train[i] for i in self.drawn])
        device = inputs["labels"].device
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        logits = self.head.logits(model, batch).float()
        loss = reference.spec.loss(logits, batch["labels"])  # the reference shape's loss
        return len(self.drawn) / batch_size * loss

    def run_info(self, args):
        return {"replay": {"ratio": args.replay_ratio}}

    def describe(self, training):
        settings = training.get("replay") or {}
        return (
            f"Replay: every training step also trained on {settings.get('ratio')} reference-task "
            "rows per new row, with their own labels and the reference head on the trained "
            "backbone."
        )
