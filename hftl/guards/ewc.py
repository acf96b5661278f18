"""``ewc``: elastic weight consolidation (Kirkpatrick et al. 2017), against forgetting the
reference task (:mod:`hftl.reference`).

L2-SP pulls every weight back to its start equally; EWC pulls each by how much the reference task
depends on it, the diagonal of the Fisher information of the starting weights on the reference
data:

    F_i = mean over reference examples of (d log p(y | x) / d w_i)^2

(``p`` is the reference task's label shape's likelihood: a softmax over classes, a Bernoulli per
label, a Gaussian with the targets' spread for numbers)
    penalty = ewc_lambda / 2 * sum_i F_i (w_i - w0_i)^2

``ewc_fisher: empirical`` takes ``y`` from the data's labels, ``true`` samples it from the
model's own prediction. Gradients are taken one example at a time (``ewc_fisher_samples`` of
them, in eval mode), over the weights outside the head that train in this run. ``F`` is divided
by its mean, so ``ewc_lambda`` is on the scale of L2-SP's alpha (a weight of average importance
is pulled as L2-SP would pull every weight).

The Fisher is computed once, when training starts, and saved as ``OUTPUT_DIR/ewc_fisher.safetensors``;
a resumed run reads it back. Task after task (online EWC): when the model being fine-tuned was
itself trained with EWC, the Fisher saved beside it counts too, ``F = ewc_gamma * F_before + F``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

from hftl.errors import ConfigError
from hftl.feature_cache import unwrap
from hftl.guards.base import Guard
from hftl.layers import build_layer_map
from hftl.shapes import LabelSpec
from hftl.storage import atomic_save_tensors

logger = logging.getLogger(__name__)

FISHER_FILE = "ewc_fisher.safetensors"
FISHER_KINDS = ("empirical", "true")


@dataclass
class EWCArguments:
    ewc_lambda: float = field(
        default=1.0,
        metadata={
            "help": "guards: [ewc]: the strength, lambda/2 * sum F (w - w0)^2 with the Fisher F "
            "divided by its mean (the scale of l2sp_alpha)."
        },
    )
    ewc_fisher: str = field(
        default="empirical",
        metadata={
            "help": "guards: [ewc]: empirical (the reference data's labels) or true (labels "
            "sampled from the model)."
        },
    )
    ewc_fisher_samples: int = field(
        default=256,
        metadata={"help": "guards: [ewc]: reference training examples the Fisher is taken over."},
    )
    ewc_gamma: float = field(
        default=1.0,
        metadata={
            "help": "guards: [ewc]: online EWC, the weight of a Fisher saved beside the model "
            "being fine-tuned (from its own EWC run); 0 ignores it."
        },
    )


def fisher_diagonal(model, params: dict, dataset, collator, *, samples: int, kind: str,
                    seed: int, spec: LabelSpec | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """The diagonal Fisher of ``params`` ({name: parameter of ``model``}) over ``samples`` rows
    of ``dataset`` (drawn with ``seed``), one example at a time, ``model`` in eval mode. The
    likelihood is the label shape's (``spec``; default: the model config's): a softmax over
    classes, a Bernoulli per label, a Gaussian with the targets' spread for numbers."""
    spec = spec or LabelSpec.from_config(getattr(model, "config", None))
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=generator)[:samples].tolist()
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    names, tensors = list(params), list(params.values())
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for index in order:
                batch = collator([dataset[index]])
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                labels = batch.pop("labels")
                logits = model(**batch).logits.float()
                target = spec.shape.sample(spec, logits, generator) if kind == "true" else labels
                loss = spec.shape.nll(spec, logits, target)
                grads = torch.autograd.grad(loss, tensors, allow_unused=True)
                for name, grad in zip(names, grads, strict=True):
                    if grad is not None:
                        fisher[name] += grad.detach().float() ** 2
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return {name: value / len(order) for name, value in fisher.items()}


def normalised(fisher: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``fisher`` divided by its mean over every entry (so the mean is 1)."""
    total = sum(float(f.sum()) for f in fisher.values())
    count = sum(f.numel() for f in fisher.values())
    if total <= 0:
        raise ConfigError(
            "guards [ewc]: the Fisher is zero everywhere (no weight outside the head affects the "
            "reference task's outputs); check the reference model and data"
        )
    return {name: f * (count / total) for name, f in fisher.items()}


class _Fisher(TrainerCallback):
    """When training starts: computes and saves the Fisher, or (resumed) reads it back."""

    def __init__(self, guard: EWC):
        self.guard = guard

    def on_train_begin(self, args, state, control, **kwargs):
        from safetensors.torch import load_file

        path = Path(args.output_dir) / FISHER_FILE
        if state.global_step > 0:
            if not path.is_file():
                raise ConfigError(
                    f"guards [ewc]: resuming in {args.output_dir}, but {path} (the Fisher the run "
                    "started with) is not there; start the run again with --overwrite_output_dir"
                )
            self.guard.set_fisher(load_file(str(path)))
            return
        fisher = self.guard.compute()
        if args.should_save:
            atomic_save_tensors(fisher, path, metadata=self.guard.metadata())
        self.guard.set_fisher(fisher)


class EWC(Guard):
    name = "ewc"
    summary = "pull each pretrained weight toward its start by its Fisher importance on the reference task"
    arguments = EWCArguments
    switched_by_name = True
    needs_reference = True
    needs_moving_weights = True

    ranges = {"ewc_lambda": (0, True), "ewc_fisher_samples": (1, True), "ewc_gamma": (0, True)}

    def check(self, args):
        if args.ewc_fisher not in FISHER_KINDS:
            raise ValueError(f"--ewc_fisher {args.ewc_fisher}: choose {' or '.join(FISHER_KINDS)}")

    def setup(self, model, args, reference=None):
        model = unwrap(model)
        if not reference.backbone_matches(model):
            raise ConfigError(
                f"guards [ewc]: the backbone of --reference_model_name_or_path {reference.name} is "
                "not the one training starts from, so its Fisher would be of other weights; "
                "leave --reference_model_name_or_path out (the model being fine-tuned is used)"
            )
        layer_map = build_layer_map(model)
        head = set(layer_map.names_at(layer_map.head_depth))
        frozen = args.strategy_object.frozen_backbone
        self.params = {
            name: param
            for name, param in model.named_parameters()
            if name not in head and name not in layer_map.kept_frozen and not frozen
        }
        self.start = {name: p.detach().clone() for name, p in self.params.items()}
        self.reference, self.args = reference, args
        self.earlier = _saved_beside(model)
        self.fisher: dict[str, torch.Tensor] = {}
        self.lam = args.ewc_lambda

    def compute(self) -> dict[str, torch.Tensor]:
        """The normalised Fisher of the starting weights on the reference data (plus the decayed
        Fisher saved beside the starting model, for online EWC)."""
        import time

        if not self.params:
            return {}
        started = time.perf_counter()
        ref = self.reference
        ref.model.to(next(iter(self.params.values())).device)
        ref_params = dict(ref.model.named_parameters())
        raw = fisher_diagonal(
            ref.model, {n: ref_params[n] for n in self.params}, ref.train, ref.collator,
            samples=min(self.args.ewc_fisher_samples, len(ref.train)),
            kind=self.args.ewc_fisher, seed=self.args.seed, spec=ref.spec,
        )  # fmt: skip
        fisher = normalised(raw)
        if self.earlier and self.args.ewc_gamma > 0:
            for name, before in self.earlier.items():
                if name in fisher and before.shape == fisher[name].shape:
                    fisher[name] = fisher[name] + self.args.ewc_gamma * before
        logger.info(
            "ewc: Fisher of %d tensors on %d reference examples (%s) in %.1f s%s",
            len(fisher), min(self.args.ewc_fisher_samples, len(ref.train)), self.args.ewc_fisher,
            time.perf_counter() - started,
            f"; plus {self.args.ewc_gamma:g} x the Fisher saved with the starting model"
            if self.earlier and self.args.ewc_gamma > 0 else "",
        )  # fmt: skip
        return fisher

    def set_fisher(self, fisher: dict) -> None:
        if set(fisher) != set(self.params):
            raise ConfigError(
                f"guards [ewc]: the saved Fisher covers other weights than this run trains "
                f"({len(fisher)} tensors, not {len(self.params)}); start with --overwrite_output_dir"
            )
        self.fisher = fisher

    def metadata(self) -> dict:
        return {
            "hftl": "ewc fisher (diagonal, divided by its mean)",
            "kind": self.args.ewc_fisher,
            "samples": str(min(self.args.ewc_fisher_samples, len(self.reference.train))),
        }

    def callbacks(self, args):
        return [_Fisher(self)]

    def penalty(self, model, inputs, outputs):
        if not self.lam or not self.fisher:
            return None
        terms = []
        for name, param in self.params.items():
            if param.requires_grad:
                f = self.fisher[name].to(param.device)
                w0 = self.start[name].to(param.device)
                terms.append((f * (param - w0) ** 2).sum())
        return self.lam / 2 * torch.stack(terms).sum() if terms else None

    def run_info(self, args):
        return {
            "ewc": {
                "lambda": args.ewc_lambda,
                "fisher": args.ewc_fisher,
                "samples": args.ewc_fisher_samples,
                "online": bool(getattr(self, "earlier", None)) and args.ewc_gamma > 0,
                "gamma": args.ewc_gamma,
            }
        }

    def describe(self, training):
        settings = training.get("ewc") or {}
        online = (
            f", plus {settings.get('gamma'):g} x the Fisher of the tasks before (online EWC)"
            if settings.get("online")
            else ""
        )
        return (
            f"EWC (lambda {settings.get('lambda')}) pulled each pretrained weight toward its "
            f"starting value in proportion to its importance for the reference task: the "
            f"{settings.get('fisher')} Fisher information on {settings.get('samples')} reference "
            f"examples, divided by its mean{online}."
        )


def _saved_beside(model) -> dict[str, torch.Tensor] | None:
    """The Fisher an earlier EWC run saved beside the model (its output directory), if any."""
    from safetensors.torch import load_file

    source = getattr(model.config, "_name_or_path", None)
    path = Path(source) / FISHER_FILE if source else None
    if path is None or not path.is_file():
        return None
    logger.info("ewc: %s holds the Fisher of an earlier task (online EWC)", path)
    return load_file(str(path))
