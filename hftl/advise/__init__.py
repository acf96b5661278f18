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

import logging
from dataclasses import dataclass, field
from pathlib import Path

from hftl.advise.report import Advice, data_flags, format_advice, write_config
from hftl.advise.rules import DataProfile, ModelScore, Recommendation, recommend
from hftl.advise.scoring import profile_data, score_model, stratified_sample
from hftl.assets import fetch_named
from hftl.config import TransferTrainingArguments
from hftl.errors import ConfigError
from hftl.run import load_classification_data
from hftl.strategies.full import layer_decay_for

logger = logging.getLogger(__name__)


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
    use_cpu: bool = field(
        default=False, metadata={"help": "Extract on the CPU even where a GPU is available."}
    )


def advise(task, data_args, task_args, advise_args, *, controls: tuple[str, ...] = ()) -> Advice:
    """Score ``advise_args.models`` (and, ``controls``, the same architectures from random
    weights) on the data and recommend a run."""
    models = list(advise_args.models or task.advise_models)
    fetch_named(data_args, models, list(controls))  # hftl: assets, before anything loads
    flags = data_flags(data_args, task_args)  # as given (the task may fill in its defaults)
    raw, columns, spec = load_classification_data(data_args, task, task_args, seed=advise_args.seed)
    full_train = raw["train"]
    sample = stratified_sample(full_train, columns.label, advise_args.max_samples, advise_args.seed,
                               stratify=spec.shape.stratified)  # fmt: skip
    profile = profile_data(full_train, spec, scored=len(sample))
    raw["train"] = sample
    raw["validation"] = raw["validation"].select(range(min(1, len(raw["validation"]))))
    args = TransferTrainingArguments(
        output_dir=str(Path(advise_args.output_dir or "outputs") / "advise"),
        strategy="feature_extraction",
        seed=advise_args.seed,
        per_device_eval_batch_size=advise_args.per_device_eval_batch_size,
        feature_cache_dir=advise_args.feature_cache_dir,
        disable_tqdm=advise_args.disable_tqdm,
        use_cpu=advise_args.use_cpu,
        report_to="none",
    )
    scores = []
    runs = [(m, False) for m in models] + [(m, True) for m in controls]
    for i, (name, scratch) in enumerate(runs, 1):
        logger.info("advise: model %d/%d: %s%s", i, len(runs), name, " (random init)" * scratch)
        try:
            scores.append(
                score_model(name, task, raw, columns, spec, task_args, args, from_scratch=scratch)
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


__all__ = [
    "Advice",
    "AdviseArguments",
    "DataProfile",
    "ModelScore",
    "Recommendation",
    "advise",
    "format_advice",
    "layer_decay_for",
    "recommend",
    "write_config",
]
