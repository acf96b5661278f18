"""The advice's rules: plain code over the data's profile and the models' scores, with the
thresholds at the top (docs/advise_study.md says where each comes from), so tests check them at
their boundaries."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hftl.strategies import STRATEGIES

# The rules' thresholds; docs/advise_study.md says where each comes from.
FEATURES_FIT = 0.97  # frozen-feature probe accuracy from which fine-tuning has little to add
FEW_PER_CLASS = 1000  # below this many examples per class, adapters rather than all weights
TARGET_STEPS = 300  # optimizer steps a recommended run aims at
EPOCHS = (3, 30)  # ... within these epochs
# Each strategy's own starting values (its learning rate, the head's multiplier, LLRD, the
# blocks that train, LoRA's rank) are the strategy's: Strategy.base_learning_rate and .advised.


@dataclass
class DataProfile:
    """The training data's size and shape (the whole training split, before any sampling)."""

    examples: int
    classes: int
    per_class_min: int
    per_class_max: int
    scored: int  # examples the models are scored on (a stratified sample where fewer)
    smallest_class: str = ""

    @property
    def per_class(self) -> float:
        return self.examples / self.classes

    @property
    def balance(self) -> float:
        """Smallest class over largest (1 = balanced)."""
        return self.per_class_min / self.per_class_max


@dataclass
class ModelScore:
    """One model's scores on the data and what the rules need to know about it."""

    model: str
    logme: float
    probe_accuracy: float | None
    probe_folds: int | None
    feature_dim: int
    parameters: int
    num_blocks: int
    takes_lora: bool
    from_scratch: bool = False
    leep: float | None = None
    nce: float | None = None
    source_classes: int | None = None
    source_explained: float | None = None  # 1 + NCE / H(Y): the label entropy the source explains
    source_confidence: float | None = None  # mean top-class probability of the source head
    extract_seconds: float = 0.0
    score_seconds: float = 0.0
    load_seconds: float = 0.0
    reused: bool = False

    @property
    def label(self) -> str:
        return f"{self.model} (random init)" if self.from_scratch else self.model


@dataclass
class Recommendation:
    """The advised run: ``settings`` are recipe options; ``reasons`` one line per choice."""

    model: str
    strategy: str
    settings: dict
    reasons: dict[str, str]
    notes: list[str] = field(default_factory=list)


def recommend(profile: DataProfile, scores: list[ModelScore], task) -> Recommendation:
    """The model, strategy and starting values for ``profile`` given the models' ``scores``."""
    from hftl.tasks import task_of

    task = task_of(task)
    candidates = [s for s in scores if not s.from_scratch] or scores
    ranked = sorted(candidates, key=lambda s: s.logme, reverse=True)
    best = ranked[0]
    reasons = {"model": _model_reason(best, ranked)}
    probe = best.probe_accuracy
    per_class = profile.per_class
    if probe is not None and probe >= FEATURES_FIT and per_class < FEW_PER_CLASS:
        strategy = "feature_extraction"
        reasons["strategy"] = (
            f"its frozen features already separate the classes (probe accuracy {probe:.1%} >= "
            f"{FEATURES_FIT:.0%}): fine-tuning has little to add with {per_class:.0f} examples "
            "per class and would cost a backbone pass every step"
        )
    elif per_class < FEW_PER_CLASS:
        fit = f"probe accuracy {probe:.1%}" if probe is not None else "no probe (too few examples)"
        if best.takes_lora:
            strategy = "lora"
            reasons["strategy"] = (
                f"{per_class:.0f} examples per class (< {FEW_PER_CLASS}) and features that do not "
                f"fit yet ({fit}): adapters adjust the backbone while its "
                f"{best.parameters / 1e6:.1f}M weights stay as they are (in docs/transfer_study.md "
                "LoRA was the best arm or within 0.3 points of it at 50-1,000 examples)"
            )
        else:
            strategy = "partial"
            reasons["strategy"] = (
                f"{per_class:.0f} examples per class (< {FEW_PER_CLASS}) and features that do not "
                f"fit yet ({fit}); LoRA finds no layer to adapt in this model, so the top blocks "
                "train"
            )
    else:
        strategy = "full"
        reasons["strategy"] = (
            f"{per_class:.0f} examples per class (>= {FEW_PER_CLASS}): enough to move every "
            "weight, with smaller steps for the lower layers (LLRD)"
        )
    settings, value_reasons = starting_values(strategy, profile, best, task)
    reasons.update(value_reasons)
    notes = []
    if profile.balance < 0.2:
        notes.append(
            f"classes are imbalanced (smallest/largest {profile.balance:.2f}, "
            f"'{profile.smallest_class}' has {profile.per_class_min}): judge the run by macro-F1, "
            "which it reports, not accuracy"
        )
    if profile.scored < profile.examples:
        notes.append(
            f"scored on a stratified sample of {profile.scored} of {profile.examples} examples; "
            "the run extracts the rest's features itself"
        )
    return Recommendation(best.model, strategy, settings, reasons, notes)


def _model_reason(best: ModelScore, ranked: list[ModelScore]) -> str:
    if len(ranked) == 1:
        return f"the only model scored (LogME {best.logme:.3f})"
    second = ranked[1]
    return (
        f"highest LogME ({best.logme:.3f}; next {second.model} at {second.logme:.3f}): the "
        "evidence that a linear model on its features explains these labels"
    )


def starting_values(strategy: str, profile: DataProfile, best: ModelScore, task) -> tuple:
    """(recipe settings, their reasons) for ``strategy`` on this data and model."""
    batch = 32 if profile.examples >= 64 else 16
    settings: dict = {"strategy": strategy, "per_device_train_batch_size": batch}
    chosen = STRATEGIES.get(strategy)
    settings["learning_rate"] = chosen.base_learning_rate(task)
    values, reasons = chosen.advised(task, best.num_blocks)
    settings.update(values)
    epochs = epochs_for(profile.examples, batch)
    settings["num_train_epochs"] = epochs
    steps = math.ceil(profile.examples / batch) * epochs
    reasons["num_train_epochs"] = (
        f"about {TARGET_STEPS} optimizer steps of batch {batch} ({steps} here), within "
        f"{EPOCHS[0]}-{EPOCHS[1]} epochs"
    )
    return settings, reasons


def epochs_for(examples: int, batch: int) -> int:
    """Epochs for about :data:`TARGET_STEPS` optimizer steps, within :data:`EPOCHS`."""
    per_epoch = max(1, math.ceil(examples / batch))
    return int(min(EPOCHS[1], max(EPOCHS[0], math.ceil(TARGET_STEPS / per_epoch))))
