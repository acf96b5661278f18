"""The advice as a table on the screen, a YAML config that ``hftl train`` runs, and JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from hftl.advise.rules import DataProfile, ModelScore, Recommendation


@dataclass
class Advice:
    task: str
    profile: DataProfile
    scores: list[ModelScore]
    recommendation: Recommendation
    data_flags: dict
    seed: int = 42

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "data": {**asdict(self.profile), "balance": round(self.profile.balance, 4)},
            "models": [asdict(s) for s in self.scores],
            "recommendation": asdict(self.recommendation),
            "data_flags": self.data_flags,
            "seed": self.seed,
        }


def data_flags(data_args, task_args) -> dict:
    """The data options that differ from their defaults (what the written config repeats)."""
    flags = {}
    for arguments in (data_args, task_args):
        if arguments is None:
            continue
        defaults = type(arguments)()
        for key, value in asdict(arguments).items():
            if value != getattr(defaults, key) and not key.endswith("_token"):
                flags[key] = value
    return flags


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_advice(advice: Advice) -> str:
    p, rec = advice.profile, advice.recommendation
    lines = [
        f"data: {p.examples} training examples, {p.classes} classes, {p.per_class_min}-"
        f"{p.per_class_max} per class (balance {p.balance:.2f}); scored on {p.scored}",
        "",
        f"{'model':<44}{'LogME':>8}{'probe':>8}{'LEEP':>8}{'NCE':>8}{'source':>8}{'dim':>6}"
        f"{'extract s':>11}{'score s':>9}",
    ]
    for s in sorted(advice.scores, key=lambda s: s.logme, reverse=True):
        extract = f"{s.extract_seconds:.1f}{' (c)' if s.reused else ''}"
        lines.append(
            f"{s.label[:43]:<44}{s.logme:>8.3f}{_fmt(s.probe_accuracy, '.1%'):>8}"
            f"{_fmt(s.leep, '.3f'):>8}{_fmt(s.nce, '.3f'):>8}{_fmt(s.source_explained, '.0%'):>8}"
            f"{s.feature_dim:>6}{extract:>11}{s.score_seconds:>9.1f}"
        )
    lines += [
        "  probe: ridge-probe accuracy (k-fold CV) on the frozen features; source: share of the "
        "label entropy the checkpoint's own head explains (1 + NCE/H(Y)); (c): from the cache",
        "",
        f"advice: {rec.model}, strategy {rec.strategy}",
    ]
    for key, reason in rec.reasons.items():
        value = rec.model if key == "model" else rec.settings.get(key, rec.strategy)
        lines.append(f"  {key}: {value}  - {reason}")
    lines += [f"  note: {note}" for note in rec.notes]
    return "\n".join(lines)


def write_config(advice: Advice, path: str | Path, output_dir: str | None = None) -> Path:
    """The recommended run as a YAML config the task's recipe runs as is."""
    from hftl.tasks import task_of

    task = task_of(advice.task)
    rec = advice.recommendation
    name = Path(rec.model.rstrip("/")).name.replace("hftl:", "")
    config = {
        "model_name_or_path": rec.model,
        **advice.data_flags,
        **rec.settings,
        "output_dir": output_dir or f"outputs/{name}-{rec.strategy}",
        "seed": advice.seed,
    }
    header = [
        f"# Written by hftl advise: run it with hftl train {task.name} --config {Path(path).name}",
        f"# (accelerate launch -m hftl train {task.name} ... for several GPUs). Why each value:",
        *(f"#   {key}: {reason}" for key, reason in rec.reasons.items()),
        *(f"#   note: {note}" for note in rec.notes),
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False))
    return path
