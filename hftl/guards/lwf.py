"""``lwf``: learning without forgetting (Li & Hoiem 2016), against forgetting the reference task
(:mod:`hftl.reference`).

The reference task's own head stays on the model, in a sense: on every training batch of the new
task, the reference model as it was (the teacher: the starting backbone and the reference head)
and the reference head on the *trained* backbone (the student) both give logits for the reference
task's classes, and the student is pulled toward the teacher:

    penalty = lwf_alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)),  T = lwf_temperature

for a reference task of classes; of several labels, a sigmoid per label in place of the softmax
(binary cross-entropy against the teacher's sigmoid); of numbers, the squared difference of the
standardised outputs (no temperature). The reference task's label shape says which
(:meth:`hftl.shapes.base.LabelShape.distill`).

No reference data is needed, only the reference model. The reference head is kept frozen (the
authors also train it; keeping it fixed keeps its classes' meaning), and the teacher runs on each
batch as the model sees it (augmented), so each step costs a teacher forward and a second pass of
the trained backbone. Defaults: the authors' alpha 1 and temperature 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hftl.guards.base import Guard


@dataclass
class LwFArguments:
    lwf_alpha: float = field(
        default=1.0,
        metadata={
            "help": "guards: [lwf]: the weight of the distillation toward the reference model."
        },
    )
    lwf_temperature: float = field(
        default=2.0,
        metadata={"help": "guards: [lwf]: the softmax temperature T (T^2 scales the term)."},
    )


class LwF(Guard):
    name = "lwf"
    summary = "keep the reference head's outputs on the new data close to the original model's"
    arguments = LwFArguments
    switched_by_name = True
    needs_reference = True
    needs_moving_weights = True

    ranges = {"lwf_alpha": (0, True), "lwf_temperature": (0, False)}

    def setup(self, model, args, reference=None):
        from hftl.reference import ReferenceHead

        self.head = ReferenceHead(reference, model, self.name)
        self.alpha, self.temperature = args.lwf_alpha, args.lwf_temperature

    def penalty(self, model, inputs, outputs):
        if not self.alpha:
            return None
        student = self.head.logits(model, inputs).float()
        teacher_model = self.head.reference.model
        was_training = teacher_model.training
        teacher_model.eval()
        try:
            with torch.no_grad():
                batch = {k: v for k, v in inputs.items() if k != "labels"}
                teacher = teacher_model(**batch).logits.float()
        finally:
            teacher_model.train(was_training)
        spec = self.head.reference.spec  # the reference task's shape distils its own way
        return self.alpha * spec.shape.distill(spec, student, teacher, self.temperature)

    def run_info(self, args):
        return {"lwf": {"alpha": args.lwf_alpha, "temperature": args.lwf_temperature}}

    def describe(self, training):
        settings = training.get("lwf") or {}
        return (
            f"Learning without forgetting (alpha {settings.get('alpha')}, temperature "
            f"{settings.get('temperature')}): on every training batch, the reference task's head "
            "on the trained backbone was distilled toward the original model's outputs."
        )
