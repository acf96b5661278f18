"""``hftl advise``: which pretrained model and which strategy, measured on the user's own data.

    hftl advise --train_dir photos/ --models hftl:efficientnet-lite0 hftl:efficientnet-lite2
    hftl advise --train_file reviews.csv --write_config advised.yaml --json advice.json

The steps:

1. The data, read and checked as a recipe reads it (the same flags, the same validation split);
   its profile (:class:`DataProfile`): examples, classes, examples per class, balance.
2. Each model: its features of the training set (a stratified sample of at most ``max_samples``
   when the data is larger), computed once through the feature cache with the key a
   ``feature_extraction`` run of the same model, data and seed uses, so that run reuses them.
3. Its scores (:class:`ModelScore`): LogME on the features; LEEP and NCE where the checkpoint has
   a classification head of its own (ImageNet's, say), read on the same features; the
   cross-validated accuracy of a ridge probe.
4. :func:`recommend`: the model with the highest LogME, a strategy from the data's size and how
   well the frozen features already fit, and starting values, each with its reason in one line.
   The rules are plain code over the profile and the scores, so tests check them at their
   boundaries; docs/advise_study.md measures them against fine-tuning.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from hftl.errors import ConfigError

logger = logging.getLogger(__name__)

# The rules' thresholds; docs/advise_study.md says where each comes from.
FEATURES_FIT = 0.97  # frozen-feature probe accuracy from which fine-tuning has little to add
FEW_PER_CLASS = 1000  # below this many examples per class, adapters rather than all weights
TARGET_STEPS = 300  # optimizer steps a recommended run aims at
EPOCHS = (3, 30)  # ... within these epochs
LOWEST_BLOCK_SHARE = 0.1  # with LLRD, the lowest block trains at this share of the top's LR
# The learning rate of each strategy over the task's base rate (hftl.tasks: Task.learning_rate),
# and the head's multiplier, as in docs/transfer_study.md's arms; lora: the task's own multiplier.
LR_MULTIPLIERS = {"feature_extraction": 50.0, "partial": 1.0, "full": 1.0}
HEAD_LR_MULTIPLIER = 10.0


@dataclass
class AdviseArguments:
    """What ``hftl advise`` scores and where its advice goes."""

    task: str | None = field(
        default=None,
        metadata={
            "help": "image-classification, text-classification or audio-classification "
            "(default: the task of the first --models checkpoint)."
        },
    )
    models: list[str] | None = field(
        default=None,
        metadata={
            "help": "Checkpoints to score: Hub ids, directories, hftl: assets (default: the "
            "task's short list of Hub models)."
        },
    )
    max_samples: int = field(
        default=5000,
        metadata={
            "help": "Score on a stratified sample of at most this many training examples (all "
            "of them, and a following feature_extraction run reuses the features, when fewer)."
        },
    )
    seed: int = field(default=42, metadata={"help": "Sample, head initialisation, probe folds."})
    per_device_eval_batch_size: int = field(
        default=64, metadata={"help": "Batch size of the feature extraction."}
    )
    feature_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where features are cached (default: $HFTL_CACHE/features)."},
    )
    output_dir: str | None = field(
        default=None,
        metadata={"help": "The output_dir the written config names (default: outputs/<model>)."},
    )
    write_config: str | None = field(
        default=None,
        metadata={"help": "Write the recommended run as a YAML config the task's recipe runs."},
    )
    json: str | None = field(
        default=None, metadata={"help": "Write everything measured and advised as JSON here."}
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars."})


# --------------------------------------------------------------------------------------------
# What is measured
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------------------------


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
    reasons: dict[str, str] = {}
    base = task.learning_rate
    if strategy == "lora":
        settings["learning_rate"] = base * task.lora_lr_multiplier
        settings["lora_r"] = 8
        reasons["learning_rate"] = (
            f"{task.lora_lr_multiplier:g}x the task's base rate {base:g}: adapters start at zero "
            "and need larger steps (the transfer study's LoRA arm)"
        )
    else:
        settings["learning_rate"] = base * LR_MULTIPLIERS[strategy]
        if strategy == "feature_extraction":
            settings["linear_probe"] = True
            reasons["learning_rate"] = (
                f"{LR_MULTIPLIERS[strategy]:g}x the task's base rate {base:g}: only the new head "
                "trains, from the linear probe fitted on the features"
            )
        else:
            settings["head_lr_multiplier"] = HEAD_LR_MULTIPLIER
            reasons["learning_rate"] = (
                f"the task's base rate {base:g} for the pretrained layers, {HEAD_LR_MULTIPLIER:g}x "
                "for the new head, which starts from random"
            )
    if strategy == "partial":
        blocks = max(1, math.ceil(best.num_blocks / 4))
        settings["num_trainable_layers"] = blocks
        reasons["num_trainable_layers"] = (
            f"the top quarter of the {best.num_blocks} blocks, the most task-specific ones"
        )
    if strategy == "full":
        decay = layer_decay_for(best.num_blocks)
        settings["layer_decay"] = decay
        reasons["layer_decay"] = (
            f"{decay} over {best.num_blocks} blocks: the lowest block trains at about "
            f"{LOWEST_BLOCK_SHARE:.0%} of the top's rate, keeping the general low-level features"
        )
    epochs = epochs_for(profile.examples, batch)
    settings["num_train_epochs"] = epochs
    steps = math.ceil(profile.examples / batch) * epochs
    reasons["num_train_epochs"] = (
        f"about {TARGET_STEPS} optimizer steps of batch {batch} ({steps} here), within "
        f"{EPOCHS[0]}-{EPOCHS[1]} epochs"
    )
    return settings, reasons


def layer_decay_for(num_blocks: int) -> float:
    """LLRD factor whose lowest block gets :data:`LOWEST_BLOCK_SHARE` of the top block's rate."""
    if num_blocks <= 1:
        return 1.0
    return round(LOWEST_BLOCK_SHARE ** (1 / (num_blocks - 1)), 2)


def epochs_for(examples: int, batch: int) -> int:
    """Epochs for about :data:`TARGET_STEPS` optimizer steps, within :data:`EPOCHS`."""
    per_epoch = max(1, math.ceil(examples / batch))
    return int(min(EPOCHS[1], max(EPOCHS[0], math.ceil(TARGET_STEPS / per_epoch))))


# --------------------------------------------------------------------------------------------
# Measuring: the data, then each model
# --------------------------------------------------------------------------------------------


def profile_data(train, label_column: str, labels: list[str], scored: int) -> DataProfile:
    counts = np.bincount(np.asarray(train[label_column]), minlength=len(labels))
    present = counts[counts > 0]
    return DataProfile(
        examples=int(counts.sum()),
        classes=len(labels),
        per_class_min=int(counts.min()),
        per_class_max=int(present.max()),
        scored=scored,
        smallest_class=labels[int(counts.argmin())],
    )


def stratified_sample(train, label_column: str, max_samples: int, seed: int):
    """At most ``max_samples`` rows of ``train``, every class in proportion (the whole split where
    it is no larger)."""
    if len(train) <= max_samples:
        return train
    try:
        return train.train_test_split(
            train_size=max_samples, seed=seed, stratify_by_column=label_column
        )["train"]
    except ValueError:  # a class too small to stratify: a plain seeded sample
        logger.info("advise: a class is too small to stratify the sample; sampling at random")
        return train.shuffle(seed=seed).select(range(max_samples))


def score_model(name: str, task, raw, columns, labels, task_args, args, *,
                from_scratch: bool = False) -> ModelScore:  # fmt: skip
    """Load ``name`` with a new head for ``labels`` (as a run with ``args.seed`` does), extract
    its features of ``raw["train"]`` through the cache, and score them."""
    from transformers import set_seed

    from hftl.config import ModelArguments
    from hftl.feature_cache import split_for, starting_features
    from hftl.layers import build_layer_map
    from hftl.models import load_classifier, load_processor, load_source_classifier
    from hftl.strategies.lora import default_lora_targets
    from hftl.transferability import label_entropy, leep, logme, nce, probe_accuracy

    started = time.perf_counter()
    model_args = ModelArguments(name, from_scratch=from_scratch)
    processor = load_processor(model_args, task)
    set_seed(args.seed)  # the head a feature_extraction run with this seed starts from
    model = load_classifier(model_args, task, labels, task_args)
    data = task.prepare(raw, processor, columns, task_args, args)
    load_seconds = time.perf_counter() - started
    layer_map = build_layer_map(model)
    try:
        default_lora_targets(model, layer_map)
        takes_lora = True
    except ValueError:
        takes_lora = False
    try:
        train, split, info = starting_features(
            model, args, data.train, data_collator=data.collator, processing_class=processor
        )
    except ValueError as error:
        raise ConfigError(f"--models {name}: {error}; leave it out of --models") from None
    features, targets = np.asarray(train.features, dtype=np.float32), np.asarray(train.labels)
    score_started = time.perf_counter()
    score = ModelScore(
        model=name,
        logme=logme(features, targets),
        probe_accuracy=None,
        probe_folds=None,
        feature_dim=int(features.shape[1]),
        parameters=sum(p.numel() for p in model.parameters()),
        num_blocks=layer_map.num_blocks,
        takes_lora=takes_lora,
        from_scratch=from_scratch,
        extract_seconds=round(info["seconds"], 2),
        reused=bool(info["reused"]),
    )
    probe = probe_accuracy(features, targets, seed=args.seed)
    if probe is not None:
        score.probe_accuracy, score.probe_folds = probe
    del model
    source = load_source_classifier(model_args, task, task_args)
    if source is not None and getattr(split_for(source), "name", None) == split.name:
        probabilities = source_probabilities(source, split, features)
        score.source_classes = int(probabilities.shape[1])
        score.leep = leep(probabilities, targets)
        score.nce = nce(probabilities, targets)
        entropy = label_entropy(targets)
        score.source_explained = 1 + score.nce / entropy if entropy > 0 else None
        score.source_confidence = float(probabilities.max(1).mean())
    del source
    gc.collect()
    score.score_seconds = round(time.perf_counter() - score_started, 2)
    score.load_seconds = round(load_seconds, 2)
    return score


def source_probabilities(source, split, features: np.ndarray, batch: int = 1024) -> np.ndarray:
    """The source head's class probabilities on ``features`` (its backbone's own features)."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(features), batch):
            chunk = torch.from_numpy(features[start : start + batch])
            out.append(torch.softmax(split.head(source, chunk).float(), -1).numpy())
    return np.concatenate(out).astype(np.float64)


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


def advise(task, data_args, task_args, advise_args, *, controls: tuple[str, ...] = ()) -> Advice:
    """Score ``advise_args.models`` (and, ``controls``, the same architectures from random
    weights) on the data and recommend a run."""
    from hftl.config import TransferTrainingArguments
    from hftl.data import load_classification_data

    models = list(advise_args.models or task.advise_models)
    flags = data_flags(data_args, task_args)  # as given (the task may fill in its defaults)
    raw, columns, labels = load_classification_data(
        data_args, task, task_args, seed=advise_args.seed
    )
    full_train = raw["train"]
    sample = stratified_sample(full_train, columns.label, advise_args.max_samples, advise_args.seed)
    profile = profile_data(full_train, columns.label, labels, scored=len(sample))
    raw["train"] = sample
    raw["validation"] = raw["validation"].select(range(min(1, len(raw["validation"]))))
    args = TransferTrainingArguments(
        output_dir=str(Path(advise_args.output_dir or "outputs") / "advise"),
        strategy="feature_extraction",
        seed=advise_args.seed,
        per_device_eval_batch_size=advise_args.per_device_eval_batch_size,
        feature_cache_dir=advise_args.feature_cache_dir,
        disable_tqdm=advise_args.disable_tqdm,
        report_to="none",
    )
    scores = []
    runs = [(m, False) for m in models] + [(m, True) for m in controls]
    for i, (name, scratch) in enumerate(runs, 1):
        logger.info("advise: model %d/%d: %s%s", i, len(runs), name, " (random init)" * scratch)
        try:
            scores.append(
                score_model(name, task, raw, columns, labels, task_args, args, from_scratch=scratch)
            )
        except ConfigError as error:
            if advise_args.models:
                raise
            raise ConfigError(
                f"{error} (it is on hftl advise's default list for {task.name}; without the Hub, "
                "name local checkpoints or hftl: assets with --models)"
            ) from None
    recommendation = recommend(profile, scores, task)
    return Advice(task.name, profile, scores, recommendation, flags,
                  seed=advise_args.seed)  # fmt: skip


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


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


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
        f"# Written by hftl advise: run it with python recipes/{task.recipe} --config {Path(path).name}",
        "# (or accelerate launch recipes/... for several GPUs). Why each value:",
        *(f"#   {key}: {reason}" for key, reason in rec.reasons.items()),
        *(f"#   note: {note}" for note in rec.notes),
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False))
    return path
