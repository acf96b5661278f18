"""``wise_ft``: weight-space ensembling of the starting and the fine-tuned model (WiSE-FT,
Wortsman et al. 2022, "Robust fine-tuning of zero-shot models").

When training ends, every weight becomes ``(1 - alpha) * start + alpha * fine_tuned``
(``wise_ft_alpha``; 0 is the starting model, 1 the fine-tuned one, exactly). The authors found
the mixture keeps much of what fine-tuning gained on the new data and much of the pretrained
model's robustness to shifted data. ``wise_ft_sweep`` evaluates a list of alphas on the
evaluation set first (each logged as ``eval_wise_ft_<alpha>_*`` and kept in ``run_info.json``).

The head: a head that started fitted (``strategy: lp_ft``, whose head begins as a linear probe)
is mixed like every other weight; a head that started random is taken from the fine-tuned model
(a mixture with random weights means nothing), so alpha then mixes the backbone only.

Both end points are written to ``OUTPUT_DIR/wise_ft/`` (``start.safetensors`` when training
begins, ``fine_tuned.safetensors`` when it ends; keys as in the saved ``model.safetensors``), so
``hftl wise-ft OUTPUT_DIR --alpha A --output_dir NEW`` makes any other mixture later without
training, and a resumed run mixes with the start it began from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

from hftl.errors import ConfigError
from hftl.families import family_of
from hftl.guards.base import Guard
from hftl.layers import build_layer_map
from hftl.run_files import FINISHED_RUN
from hftl.storage import atomic_save_tensors

logger = logging.getLogger(__name__)

ENDPOINTS = "wise_ft"  # the folder in the output directory
START, FINE_TUNED = "start.safetensors", "fine_tuned.safetensors"


@dataclass
class WiseFTArguments:
    wise_ft_alpha: float = field(
        default=0.5,
        metadata={
            "help": "guards: [wise_ft]: the fine-tuned model's share of every weight at the end, "
            "(1 - alpha) * start + alpha * fine_tuned (0: the start, 1: the fine-tuned model)."
        },
    )
    wise_ft_sweep: list[float] | None = field(
        default=None,
        metadata={
            "help": "guards: [wise_ft]: alphas to evaluate on the evaluation set before "
            "wise_ft_alpha is applied (e.g. 0 0.25 0.5 0.75 1); recorded in run_info.json."
        },
    )


def mix(start: dict, fine_tuned: dict, alpha: float, keep: set[str] = frozenset()) -> dict:
    """``(1 - alpha) * start + alpha * fine_tuned`` for every floating-point tensor (exactly
    ``start`` at 0 and ``fine_tuned`` at 1); integer tensors (counters) and the names in ``keep``
    are the fine-tuned ones."""
    mixed = {}
    for name, end in fine_tuned.items():
        begin = start[name]
        if name in keep or not end.is_floating_point():
            mixed[name] = end
        elif alpha == 0:
            mixed[name] = begin.to(end)
        elif alpha == 1:
            mixed[name] = end
        else:
            mixed[name] = torch.lerp(begin.to(end), end, alpha)
    return mixed


def saved_names(model) -> dict[str, str]:
    """{name in ``model.state_dict()``: its key in the saved ``model.safetensors``} (the family's
    saved names: timm models are saved under timm's own)."""
    family = family_of(model)
    return {name: family.saved_name(name) for name in model.state_dict()}


def write_state(state: dict, names: dict[str, str], path: Path) -> None:
    """``state`` as ``path`` (safetensors under the saved names), written whole or not at all."""
    atomic_save_tensors({names[name]: t for name, t in state.items()}, path)


class _Endpoints(TrainerCallback):
    """Writes the start when a fresh run begins; a resumed run reads it back instead."""

    def __init__(self, guard: WiseFT):
        self.guard = guard

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        path = Path(args.output_dir) / ENDPOINTS / START
        if state.global_step == 0:
            if args.should_save:
                write_state(self.guard.start, self.guard.names, path)
            return
        from safetensors.torch import load_file

        if not path.is_file():
            raise ConfigError(
                f"guards [wise_ft]: resuming in {args.output_dir}, but {path} (the weights the run "
                "started from) is not there; start the run again with --overwrite_output_dir"
            )
        saved = load_file(str(path))
        self.guard.start = {name: saved[key] for name, key in self.guard.names.items()}


class WiseFT(Guard):
    name = "wise_ft"
    summary = "at the end, mix the fine-tuned weights with the starting ones (alpha)"
    arguments = WiseFTArguments
    switched_by_name = True
    needs_moving_weights = True

    ranges = {"wise_ft_alpha": (0.0, 1.0), "wise_ft_sweep": (0.0, 1.0)}

    def setup(self, model, args, reference=None):
        layer_map = build_layer_map(model)
        head = set(layer_map.names_at(layer_map.head_depth))
        self.start = {
            name: tensor.detach().to("cpu", copy=True)
            for name, tensor in model.state_dict().items()
        }
        self.names = saved_names(model)
        # a head that started random is the fine-tuned one (see the module docstring)
        self.head_mixed = args.strategy_object.probes_head
        self.keep = set() if self.head_mixed else {n for n in self.start if n in head}
        self.alpha, self.sweep_alphas = args.wise_ft_alpha, list(args.wise_ft_sweep or [])
        self.sweep: list[dict] = []

    def callbacks(self, args):
        return [_Endpoints(self)]

    def after_training(self, trainer) -> None:
        """Write the fine-tuned end point, evaluate the sweep, and leave the model at alpha."""
        model = trainer.accelerator.unwrap_model(trainer.model)
        output = Path(trainer.args.output_dir) / ENDPOINTS
        fine_tuned = {n: t.detach().clone() for n, t in model.state_dict().items()}
        if trainer.args.should_save:
            write_state(fine_tuned, self.names, output / FINE_TUNED)
        for alpha in self.sweep_alphas:
            model.load_state_dict(mix(self.start, fine_tuned, alpha, self.keep))
            if trainer.eval_dataset is not None:
                prefix = f"eval_wise_ft_{alpha:g}"
                metrics = trainer.evaluate(metric_key_prefix=prefix)
                self.sweep.append({"alpha": alpha, **_numbers(metrics, prefix)})
        model.load_state_dict(mix(self.start, fine_tuned, self.alpha, self.keep))
        logger.info(
            "wise_ft: every weight is now %g x start + %g x fine-tuned (%s)",
            1 - self.alpha, self.alpha,
            "head mixed too" if self.head_mixed else "the head is the fine-tuned one",
        )  # fmt: skip

    def run_info(self, args):
        keep = sorted(self.names[name] for name in getattr(self, "keep", ()))
        return {
            "wise_ft": {
                "alpha": args.wise_ft_alpha,
                "head": "mixed" if getattr(self, "head_mixed", False) else "fine-tuned",
                "head_tensors": keep,
                "sweep": getattr(self, "sweep", []),
            }
        }

    def describe(self, training):
        settings = training.get("wise_ft") or {}
        alpha = settings.get("alpha")
        head = (
            "the head too"
            if settings.get("head") == "mixed"
            else "the new head is the fine-tuned one"
        )
        text = (
            f"WiSE-FT: the published weights are {1 - alpha:g} x the starting weights + {alpha:g} "
            f"x the fine-tuned ones ({head})."
        )
        sweep = settings.get("sweep") or []
        if sweep and all("accuracy" in point for point in sweep):
            points = ", ".join(f"{p['alpha']:g}: {p['accuracy']:.4f}" for p in sweep)
            text += f" Validation accuracy by alpha: {points}."
        return text


def _numbers(metrics: dict, prefix: str) -> dict:
    """``{prefix}_accuracy`` -> ``accuracy``: the metrics that are numbers, without timings."""
    return {
        key.removeprefix(f"{prefix}_"): value
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not key.endswith(("runtime", "per_second"))
    }


# files of a finished run that describe its own evaluation or training, not the mixed model
_NOT_COPIED = {"README.md", "eval_report.json", "confusion_matrix.json", "trainer_state.json",
               "train.log", "training_args.bin", "all_results.json", "eval_results.json",
               "train_results.json"}  # fmt: skip


def mix_run(run_dir, alpha: float, output_dir) -> Path:
    """``hftl wise-ft``: a copy of the finished run ``run_dir`` (trained with ``guards:
    [wise_ft]``) whose weights are ``(1 - alpha) * start + alpha * fine_tuned``, in
    ``output_dir``. The copy is not evaluated: its evaluation files and card are left out and
    ``run_info.json`` says so. Raises ``ConfigError`` with one line for anything missing."""
    import json
    import shutil

    from safetensors import safe_open
    from safetensors.torch import load_file

    run, out = Path(run_dir), Path(output_dir)
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"--alpha {alpha}: must be in [0, 1]")
    if not (run / FINISHED_RUN).is_file():
        raise ConfigError(f"{run}: no {FINISHED_RUN}; give the output directory of a finished run")
    info = json.loads((run / FINISHED_RUN).read_text())
    settings = info.get("training", {}).get("wise_ft")
    ends = [run / ENDPOINTS / START, run / ENDPOINTS / FINE_TUNED]
    if settings is None or not all(path.is_file() for path in ends):
        raise ConfigError(
            f"{run}: not trained with guards [wise_ft] ({ENDPOINTS}/{START} and "
            f"{ENDPOINTS}/{FINE_TUNED} are its end points); train with --guards wise_ft"
        )
    if not (run / "model.safetensors").is_file():
        raise ConfigError(
            f"{run}: no model.safetensors (sharded or adapter-only runs: not supported)"
        )
    if (info.get("label_shape") or {}).get("targets"):
        # the end points predict standardised targets; the saved model has the scale written
        # into its output layer, which a mixture of the end points would lack
        raise ConfigError(
            f"{run}: a regression run's end points predict standardised targets, so a new "
            "mixture would not be in the data's units; train again with --wise_ft_alpha A"
        )
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--output_dir {out}: not empty; give a new directory")
    start, fine_tuned = load_file(str(ends[0])), load_file(str(ends[1]))
    with safe_open(str(run / "model.safetensors"), "pt") as saved:
        keys = set(saved.keys())
    if not keys <= set(fine_tuned) or set(start) != set(fine_tuned):
        raise ConfigError(
            f"{run}: the end points in {ENDPOINTS}/ do not hold the tensors of model.safetensors"
        )
    keep = set() if settings.get("head") == "mixed" else set(settings.get("head_tensors") or [])
    mixed = mix(start, fine_tuned, alpha, keep)
    out.mkdir(parents=True, exist_ok=True)
    for path in run.iterdir():
        if path.is_file() and path.name not in _NOT_COPIED and path.suffix != ".png":
            shutil.copy2(path, out / path.name)
    atomic_save_tensors({k: mixed[k] for k in keys}, out / "model.safetensors")
    settings.update(alpha=alpha, sweep=[], mixed_from=str(run.resolve()), evaluated=False)
    (out / FINISHED_RUN).write_text(json.dumps(info, indent=2))
    return out
