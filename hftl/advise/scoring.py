"""Scoring models on the user's data: the profile of the data, a stratified sample, each model's
features through the feature cache (the key a ``feature_extraction`` run reuses), and LogME, a
ridge probe, LEEP and NCE on them."""

from __future__ import annotations

import gc
import logging
import time

import numpy as np
import torch
from transformers import set_seed

from hftl.advise.rules import DataProfile, ModelScore
from hftl.config import ModelArguments
from hftl.errors import ConfigError
from hftl.families import split_for
from hftl.feature_cache import starting_features
from hftl.layers import build_layer_map
from hftl.models import load_classifier, load_processor, load_source_classifier
from hftl.shapes import LabelSpec
from hftl.strategies.lora import default_lora_targets
from hftl.transferability import label_entropy, leep, logme, nce, probe_accuracy

logger = logging.getLogger(__name__)


def profile_data(train, spec: LabelSpec, scored: int) -> DataProfile:
    """The data's profile: examples, and per class (per label: its positive examples; per
    regression target: every example) the smallest and largest count."""
    labels = spec.names
    counts = np.asarray(spec.counts if spec.counts is not None else [len(train)] * len(labels))
    present = counts[counts > 0]
    return DataProfile(
        examples=len(train),
        classes=len(labels),
        per_class_min=int(counts.min()),
        per_class_max=int(present.max()),
        scored=scored,
        smallest_class=labels[int(counts.argmin())],
    )


def stratified_sample(train, label_column: str, max_samples: int, seed: int,
                      stratify: bool = True):  # fmt: skip
    """At most ``max_samples`` rows of ``train``, every class in proportion where ``stratify``
    (classes), else a seeded random sample; the whole split where it is no larger."""
    if len(train) <= max_samples:
        return train
    if not stratify:
        return train.shuffle(seed=seed).select(range(max_samples))
    try:
        return train.train_test_split(
            train_size=max_samples, seed=seed, stratify_by_column=label_column
        )["train"]
    except ValueError:  # a class too small to stratify: a plain seeded sample
        logger.info("advise: a class is too small to stratify the sample; sampling at random")
        return train.shuffle(seed=seed).select(range(max_samples))


def score_model(name: str, task, raw, columns, labels: LabelSpec, task_args, args, *,
                from_scratch: bool = False) -> ModelScore:  # fmt: skip
    """Load ``name`` with a new head for ``labels`` (as a run with ``args.seed`` does), extract
    its features of ``raw["train"]`` through the cache, and score them: LogME on the label
    shape's targets (one-hot classes, the 0 / 1 label columns, standardised numbers); for
    classes also the ridge probe and, from the checkpoint's own head, LEEP and NCE."""
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
    features = np.asarray(train.features, dtype=np.float32)
    targets = np.asarray(labels.shape.probe_targets(labels, np.asarray(train.labels)))
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
    classes = targets.ndim == 1  # the probe, LEEP and NCE score classes
    probe = probe_accuracy(features, targets, seed=args.seed) if classes else None
    if probe is not None:
        score.probe_accuracy, score.probe_folds = probe
    del model
    source = load_source_classifier(model_args, task, task_args) if classes else None
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
