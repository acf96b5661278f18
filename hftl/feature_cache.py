"""Feature extraction with the frozen backbone run once: cached features, then the head alone.

With ``strategy: feature_extraction`` the backbone is frozen (and, frozen, runs in eval mode), so
its output for an example is the same every epoch. :func:`cache_features`, a step before the
Trainer is built,

1. runs the backbone once over the training and evaluation data (batched, ``inference_mode``),
2. keeps the features in memory, or memory-mapped from ``$HFTL_CACHE/features/<key>.npy`` where
   ``key`` hashes the frozen weights, the data and the preprocessing (a re-run reuses them; any
   change makes a new key),
3. hands back the model's head on features (:class:`CachedFeatureModel`) and the feature
   datasets, which :class:`~hftl.TransferTrainer` trains through the ordinary loop with the same
   optimizer, schedule and data order as the uncached run. With ``linear_probe``, a callback
   first writes a logistic regression fitted on the features into the head.

The model the Trainer saves is the ordinary full model (backbone + trained head).

A *split* says, per model family, where the backbone ends: ``extract(model, batch)`` returns what
the head reads, ``head(model, features)`` the logits, so that ``head(extract(x)) == model(x)``
in eval mode (tests/test_feature_cache.py checks this for every family).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import TrainerCallback, default_data_collator
from transformers.modeling_outputs import SequenceClassifierOutput

from hftl.fast import to_channels_last

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    name: str
    extract: Callable[[nn.Module, dict], torch.Tensor]
    head: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    linear_head: Callable[[nn.Module], nn.Linear] | None = None  # for --linear_probe
    # for --linear_probe where the head is several linear layers in a row: writes logits =
    # weight @ features + bias into them
    write_linear: Callable[[nn.Module, torch.Tensor, torch.Tensor], None] | None = None

    @property
    def takes_linear_probe(self) -> bool:
        return self.linear_head is not None or self.write_linear is not None

    def set_linear(self, model: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Make the head compute ``weight @ features + bias`` (a fitted linear probe)."""
        with torch.no_grad():
            if self.write_linear is not None:
                self.write_linear(model, weight, bias)
                return
            head = self.linear_head(model)
            head.weight.copy_(weight.to(head.weight))
            head.bias.copy_(bias.to(head.bias))


def _text_inputs(batch: dict) -> dict:
    keys = ("input_ids", "attention_mask", "token_type_ids")
    return {k: batch[k] for k in keys if k in batch}


def _first_token(model, batch):
    return model.base_model(**_text_inputs(batch)).last_hidden_state[:, 0]


def _pooled_tokens(model, batch):
    return model.features(**_text_inputs(batch))


@contextmanager
def _replaced_by_identity(model: nn.Module, *names: str):
    saved = {name: getattr(model, name) for name in names}
    try:
        for name in names:
            setattr(model, name, nn.Identity())
        yield
    finally:
        for name, module in saved.items():
            setattr(model, name, module)


def _mean_of_frames(model, batch):
    """Speech classifiers (wav2vec2 family, Whisper) average the frames after a linear projector;
    the average commutes with it, so the model's own forward with projector and classifier
    replaced by identities gives the average of the encoder's frames (over the real ones, where
    there is an attention mask)."""
    keys = ("input_values", "input_features", "attention_mask")
    with _replaced_by_identity(model, "projector", "classifier"):
        return model(**{k: batch[k] for k in keys if k in batch}).logits


def _write_through_projector(model, weight, bias):
    """classifier(projector(f)) = weight @ f + bias, exactly: the projector's first C rows are
    the probe's weights and its other rows zero, the classifier passes those C through. The zero
    rows and columns get no gradient, so the head stays this linear map's rank C."""
    classes, size = weight.shape
    projector, classifier = model.projector, model.classifier
    if classes > projector.out_features:
        raise ValueError(
            f"linear_probe: {classes} classes do not fit the {projector.out_features}-wide "
            "projector (config.classifier_proj_size); train without --linear_probe"
        )
    projector.weight.zero_()
    projector.bias.zero_()
    projector.weight[:classes] = weight.to(projector.weight)
    classifier.weight.zero_()
    classifier.weight[:, :classes] = torch.eye(classes, dtype=classifier.weight.dtype)
    classifier.bias.copy_(bias.to(classifier.bias))


def _timm_extract(model, batch):
    timm_model = model.timm_model
    return timm_model.forward_head(
        timm_model.forward_features(batch["pixel_values"]), pre_logits=True
    )


def _timm_head(model, features):
    timm_model = model.timm_model
    # what forward_head does after pre_logits: timm's head dropout, then the classifier
    features = F.dropout(
        features, p=float(getattr(timm_model, "drop_rate", 0.0) or 0.0), training=model.training
    )
    return timm_model.get_classifier()(features)


SPLITS: dict[str, Split] = {
    # BERT: pooler(dense+tanh on token 0) -> dropout -> classifier
    "bert": Split("bert", _first_token,
                  lambda m, f: m.classifier(m.dropout(m.base_model.pooler(f[:, None])))),
    # RoBERTa-style classification heads read token 0 of the sequence themselves
    "roberta": Split("roberta", _first_token, lambda m, f: m.classifier(f[:, None])),
    "distilbert": Split("distilbert", _first_token,
                        lambda m, f: m.classifier(m.dropout(F.relu(m.pre_classifier(f))))),
    "deberta-v2": Split("deberta-v2", _first_token,
                        lambda m, f: m.classifier(m.dropout(m.pooler(f[:, None])))),
    # hftl's pooled text head (hftl.tasks.pooled_text): mean / max of the tokens -> dropout -> classifier
    "hftl_pooled_text": Split("pooled", _pooled_tokens, lambda m, f: m.classifier(m.dropout(f)),
                              linear_head=lambda m: m.classifier),
    "vit": Split("vit", lambda m, b: m.vit(pixel_values=b["pixel_values"]).last_hidden_state[:, 0],
                 lambda m, f: m.classifier(f), linear_head=lambda m: m.classifier),
    "deit": Split("deit", lambda m, b: m.deit(pixel_values=b["pixel_values"]).last_hidden_state[:, 0],
                  lambda m, f: m.classifier(f), linear_head=lambda m: m.classifier),
    "swin": Split("swin", lambda m, b: m.swin(pixel_values=b["pixel_values"]).pooler_output,
                  lambda m, f: m.classifier(f), linear_head=lambda m: m.classifier),
    "resnet": Split("resnet", lambda m, b: m.resnet(pixel_values=b["pixel_values"]).pooler_output.flatten(1),
                    lambda m, f: m.classifier[1](f), linear_head=lambda m: m.classifier[1]),
    "convnext": Split("convnext", lambda m, b: m.convnext(pixel_values=b["pixel_values"]).pooler_output,
                      lambda m, f: m.classifier(f), linear_head=lambda m: m.classifier),
    "timm_wrapper": Split("timm", _timm_extract, _timm_head,
                          linear_head=lambda m: m.timm_model.get_classifier()),
    # speech: mean of the encoder's frames -> projector -> classifier (both linear)
    "wav2vec2": Split("frames", _mean_of_frames, lambda m, f: m.classifier(m.projector(f)),
                      write_linear=_write_through_projector),
    # AST: the mean of its two class tokens -> layer norm + linear
    "audio-spectrogram-transformer": Split(
        "ast", lambda m, b: m.base_model(input_values=b["input_values"]).pooler_output,
        lambda m, f: m.classifier(f)),
}  # fmt: skip
for _alias, _target in {"roberta": ("xlm-roberta", "camembert", "electra", "mpnet"),
                        "deberta-v2": ("deberta",),
                        "wav2vec2": ("hubert", "wavlm", "data2vec-audio", "unispeech",
                                     "unispeech-sat", "sew", "sew-d", "wav2vec2-conformer",
                                     "wav2vec2-bert", "whisper")}.items():  # fmt: skip
    for _name in _target:
        SPLITS[_name] = SPLITS[_alias]


def split_for(model: nn.Module) -> Split | None:
    """The split of ``model``'s family, or None where hftl does not know where its backbone ends."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    split = SPLITS.get(model_type)
    if split is None:
        return None
    if getattr(config, "use_weighted_layer_sum", False):  # the head weighs every layer's output
        return None
    if model_type == "timm_wrapper" and not isinstance(
        model.timm_model.get_classifier(), nn.Module
    ):  # distilled models (DeiT): two heads on two tokens
        return None
    if model_type == "resnet" and not (
        isinstance(model.classifier, nn.Sequential) and isinstance(model.classifier[-1], nn.Linear)
    ):
        return None
    return split


class CachedFeatureModel(nn.Module):
    """The head of ``model`` on precomputed features: ``forward(features, labels)``; called with
    the model's usual inputs instead, it runs the full model.

    Its parameters are ``model``'s own (names prefixed ``model.``), so training it trains the
    head of the full model in place.
    """

    # Trainer reads this after loading a checkpoint into the model it trains; the weights are
    # then loaded again, exactly, into the full model (hftl.checkpoints.CheckpointCallback).
    _keys_to_ignore_on_save = None
    # The backbone does not run on features, so hftl.freezing's hook that keeps frozen modules
    # in eval mode has nothing to do here (and would walk the backbone every step).
    _hftl_frozen_guard = "not needed"

    def __init__(self, model: nn.Module, split: Split):
        super().__init__()
        self.model = model
        self.split = split
        self.config = model.config
        self._params: list[nn.Parameter] | None = None
        self._mode: bool | None = None  # the mode train() last set on every submodule

    # Trainer calls train(), zero_grad() and clip_grad_norm_(parameters()) every step; each walks
    # the whole backbone's module tree, which costs more than the head's own step. Here a
    # repeated train(mode) is a no-op and parameters() (which Module.zero_grad iterates too)
    # reads a list made once (the same Parameter objects: .to() and load_state_dict() update
    # them in place).
    def get_base_model(self) -> nn.Module:
        """The full model (how :func:`hftl.layers.build_layer_map` finds its layers)."""
        return self.model

    def train(self, mode: bool = True):
        if self._mode is mode:
            return self
        super().train(mode)
        self._mode = mode
        return self

    def parameters(self, recurse: bool = True):
        if not recurse:
            return super().parameters(recurse)
        if self._params is None:
            self._params = list(super().parameters())
        return iter(self._params)

    def _apply(self, fn, *args, **kwargs):
        self._params = None  # in case a conversion replaced Parameter objects
        return super()._apply(fn, *args, **kwargs)

    def forward(self, features=None, labels=None, **inputs):
        if features is None:  # the model's own inputs (input_ids, pixel_values, ...)
            return self.model(labels=labels, **inputs)
        logits = self.split.head(self.model, features)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)


class FeatureDataset(torch.utils.data.Dataset):
    """Rows ``{"features": tensor, "labels": int}`` over a (possibly memory-mapped) array, or
    over several *views* (arrays of the same examples under random augmentation): epoch ``e``
    reads view ``e mod views`` (:meth:`set_epoch`, which the trainer calls as each epoch begins).
    """

    def __init__(self, features, labels):
        self.views = list(features) if isinstance(features, (list, tuple)) else [features]
        self.labels = labels
        self.view = 0

    @property
    def features(self):
        """The array read this epoch."""
        return self.views[self.view]

    def set_epoch(self, epoch: int) -> None:
        self.view = int(epoch) % len(self.views)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {
            "features": torch.from_numpy(np.array(self.features[index], dtype=np.float32)),
            "labels": int(self.labels[index]),
        }


def unwrap(model: nn.Module) -> nn.Module:
    """The full model behind a :class:`CachedFeatureModel` (anything else is returned as is)."""
    return model.model if isinstance(model, CachedFeatureModel) else model


# --------------------------------------------------------------------------------------------
# The step before the Trainer: features of every dataset, the head-on-features model
# --------------------------------------------------------------------------------------------


@dataclass
class CachedFeatures:
    """What :func:`cache_features` hands to the Trainer: ``model`` (the head on features),
    ``train`` / ``eval`` feature datasets, the ``collator`` and ``callbacks`` to pass, and
    ``info`` for the run's record (examples, seconds in all and for the training set, entries
    reused, augmented views of the training set, linear_probe)."""

    model: CachedFeatureModel
    train: FeatureDataset
    eval: object
    callbacks: list
    info: dict
    extractor: Callable
    collator: Callable = default_data_collator

    def features(self, dataset):
        """Another dataset in the full model's format as features (cached like the others)."""
        return self.extractor(dataset)


def cache_features(model: nn.Module, args, train_dataset, eval_dataset=None, *,
                   data_collator=None, processing_class=None) -> CachedFeatures | None:  # fmt: skip
    """Run the frozen backbone of ``model`` once over the data (or reuse the features stored for
    these weights, data and preprocessing); None where hftl does not know where the model's
    backbone ends (the Trainer then runs the frozen backbone every step).

    ``eval_dataset`` may be one dataset or a dict of them, as for ``Trainer``.
    """
    split = split_for(model)
    if args.linear_probe and (split is None or not split.takes_linear_probe):
        raise ValueError(
            f"linear_probe needs a model whose head is linear on cached features (timm, ViT, "
            f"ResNet, ConvNeXt, hftl's pooled text head, speech models); {type(model).__name__} "
            "is not one"
        )
    if split is None:
        logger.info(
            "feature cache: not available for %s; the frozen backbone runs every step",
            type(model).__name__,
        )
        return None
    channels_last = _channels_last(model, args)
    info = {"used": True, "examples": 0, "seconds": 0.0, "train_seconds": 0.0, "reused": 0,
            "linear_probe": None}  # fmt: skip
    done: dict[int, FeatureDataset] = {}

    def features_of(dataset):
        if dataset is None or isinstance(dataset, FeatureDataset):
            return dataset
        if isinstance(dataset, dict):
            return {name: features_of(d) for name, d in dataset.items()}
        if id(dataset) not in done:
            done[id(dataset)] = _extract_cached(
                model, split, dataset, data_collator, processing_class, args, channels_last, info
            )
        return done[id(dataset)]

    views = num_views(args, train_dataset)
    if views > 1:
        train = _extract_views(model, split, train_dataset, data_collator, processing_class, args,
                               channels_last, info, views)  # fmt: skip
        done[id(train_dataset)] = train
    else:
        train = features_of(train_dataset)
    info["views"] = views
    info["train_seconds"] = info["seconds"]  # the training set's share (the rest: evaluation)
    callbacks = []
    if args.linear_probe:
        callbacks.append(LinearProbeCallback(train, split, info, seed=args.seed))
    return CachedFeatures(
        model=CachedFeatureModel(model, split),
        train=train,
        eval=features_of(eval_dataset),
        callbacks=callbacks,
        info=info,
        extractor=features_of,
    )


def _channels_last(model: nn.Module, args) -> bool:
    """Whether the backbone runs channels-last (``--channels_last``; the model is converted)."""
    from hftl.fast import wants_channels_last

    channels_last = wants_channels_last(model, args.channels_last)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return channels_last


def transform_of(dataset):
    """The ``set_transform`` / ``with_transform`` function of a ``datasets.Dataset`` (or None)."""
    return getattr(dataset, "_format_kwargs", {}).get("transform")


def is_random(dataset) -> bool:
    """Whether ``dataset``'s transform draws random augmentation (the tasks mark theirs with
    ``hftl_random``)."""
    return bool(getattr(transform_of(dataset), "hftl_random", False))


def num_views(args, train_dataset) -> int:
    """How many augmented views of the training set to cache: 1 for data without random
    augmentation, else ``feature_cache_views``, and no more than the epochs that read them."""
    if train_dataset is None or not is_random(train_dataset):
        return 1
    views = args.feature_cache_views
    if args.max_steps <= 0:
        views = min(views, max(1, math.ceil(args.num_train_epochs)))
    return views


def _extract_views(model, split, dataset, collator, processing_class, args, channels_last, info,
                   views) -> FeatureDataset:  # fmt: skip
    """``views`` passes of the frozen backbone over a randomly augmented training set, each with
    its own seed (so each view, and its cache entry, is reproducible)."""
    arrays, labels = [], None
    for view in range(views):
        with _seeded(args.seed * 7919 + view):
            one = _extract_cached(model, split, dataset, collator, processing_class, args,
                                  channels_last, info, view=f"view {view + 1}/{views}")  # fmt: skip
        if labels is not None and not np.array_equal(labels, one.labels):
            raise RuntimeError("feature cache: the views of the training set differ in labels")
        arrays.append(one.features)
        labels = one.labels
    return FeatureDataset(arrays, labels)


@contextmanager
def _seeded(seed: int):
    """Seed python, numpy and torch for the block; the previous random states come back after."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def _entries(directory) -> set[str]:
    if directory is None or not directory.exists():
        return set()
    return {p.name.split(".")[0] for p in directory.glob("*.features.npy")}


def _extract_cached(model, split, dataset, collator, processing_class, args, channels_last, info,
                    view: str | None = None) -> FeatureDataset:  # fmt: skip
    """The FeatureDataset of one dataset (extracted once, or read from the cache); ``view``
    names one augmented view (keyed by it and the seed)."""
    import time

    from hftl.assets import cache_dir

    directory = args.feature_cache_dir
    if directory is None:
        directory = cache_dir() / "features"
    directory = None if str(directory) == "memory" else Path(directory)
    dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
    preprocessing = describe_preprocessing(dataset, collator, processing_class)
    if getattr(dataset, "_fingerprint", None) is None:
        directory, key = None, "in-memory"  # not a datasets.Dataset: nothing to key a file on
    else:
        layout = "|channels_last" if channels_last else ""
        views = f"|{view}|seed {args.seed}" if view else ""
        key = cache_key(model, split, dataset, preprocessing, f"{dtype}{layout}{views}")
    device = args.device
    model.to(device)
    started = time.perf_counter()
    before = _entries(directory)

    def compute():
        return extract(
            model, split, dataset, collator,
            batch_size=max(args.per_device_eval_batch_size, args.per_device_train_batch_size),
            device=device, autocast_dtype=dtype, num_workers=args.dataloader_num_workers,
            channels_last=channels_last,
            progress=None if args.disable_tqdm or not args.should_log else f"features{f' ({view})' if view else ''}",
        )  # fmt: skip

    with args.main_process_first(desc="feature extraction"):
        features, labels = cached_features(key, compute, directory, args.should_save)
    seconds = time.perf_counter() - started
    reused = directory is not None and key in before
    info["seconds"] += seconds
    info["examples"] += len(labels)
    info["reused"] += int(reused)
    logger.info(
        "feature cache: %d examples%s -> %s features in %.1f s (%s)",
        len(labels), f" ({view})" if view else "", "x".join(map(str, features.shape)), seconds,
        "reused" if reused else "computed once" if directory is None
        else f"computed once, kept in {directory}",
    )  # fmt: skip
    return FeatureDataset(features, labels)


class LinearProbeCallback(TrainerCallback):
    """``linear_probe``: when training begins, fit a logistic regression on the training
    features and write it into the model's linear classifier (the head's initialisation)."""

    def __init__(self, train: FeatureDataset, split: Split, info: dict, seed: int = 0):
        self.train, self.split, self.info, self.seed = train, split, info, seed

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step > 0:  # resumed: the head is the checkpoint's
            return
        views = self.train.views  # every augmented view is a training example for the probe
        probe = write_probe(
            unwrap(model),
            self.split,
            np.concatenate(views) if len(views) > 1 else views[0],
            np.tile(self.train.labels, len(views)),
            self.info,
            seed=self.seed,
        )
        state.log_history.append(
            {"probe_C": probe["C"], "probe_cv_accuracy": round(probe["cv_accuracy"], 4),
             "probe_seconds": probe["seconds"], "step": 0}
        )  # fmt: skip


def write_probe(model: nn.Module, split: Split, features, labels, info: dict, seed: int = 0):
    """Fit :func:`fit_linear_probe` on ``features`` and write it into ``model``'s head; the
    probe's C, CV accuracy, folds and seconds go into ``info["linear_probe"]`` (and are
    returned)."""
    import time

    started = time.perf_counter()
    probe = fit_linear_probe(features, labels, model.config.num_labels, seed=seed)
    split.set_linear(model, probe["weight"], probe["bias"])
    record = {k: probe[k] for k in ("C", "cv_accuracy", "folds")}
    record["seconds"] = round(time.perf_counter() - started, 3)
    info["linear_probe"] = record
    logger.info(
        "linear probe: C=%g (%d-fold CV accuracy %.3f) in %.1f s, written into the classifier",
        probe["C"], probe["folds"], probe["cv_accuracy"], record["seconds"],
    )  # fmt: skip
    return record


def starting_features(model: nn.Module, args, dataset, *, data_collator=None,
                      processing_class=None) -> tuple[FeatureDataset, Split, dict]:  # fmt: skip
    """The starting backbone's features of ``dataset``, cached as ``feature_extraction`` caches
    them with these arguments (same key, so a following run reuses them; under random
    augmentation one seeded view): (the features, the model's split, the record: examples,
    seconds, reused). For LP-FT's probe and ``hftl advise``.

    A model whose backbone end hftl does not know raises ``ValueError``.
    """
    split = split_for(model)
    if split is None:
        raise ValueError(
            f"hftl does not know where the backbone of {type(model).__name__} ends, so it "
            "cannot compute its features"
        )
    channels_last = _channels_last(model, args)
    info = {"used": True, "examples": 0, "seconds": 0.0, "reused": 0, "views": 1}
    random_view = is_random(dataset)
    with _seeded(args.seed * 7919) if random_view else nullcontext():
        features = _extract_cached(
            model, split, dataset, data_collator, processing_class, args, channels_last, info,
            view="probe view" if random_view else None,
        )  # fmt: skip
    return features, split, info


def probe_head(model: nn.Module, args, train_dataset, *, data_collator=None,
               processing_class=None) -> dict:  # fmt: skip
    """The first step of ``strategy: lp_ft``: the starting backbone's features of the training
    set (:func:`starting_features`), a logistic regression fitted on them and written into
    ``model``'s head, in place. Returns the record for ``run_info.json`` (``linear_probe``: C,
    CV accuracy, folds, seconds).

    A model whose head is not linear on the features it reads (BERT's pooler, DistilBERT's
    pre-classifier, RoBERTa's dense layer) is a one-line ``ConfigError``.
    """
    from hftl.errors import ConfigError

    split = split_for(model)
    if split is None or not split.takes_linear_probe:
        raise ConfigError(
            f"strategy lp_ft: {type(model).__name__}'s head is not one linear layer on the "
            "features its backbone gives, so no linear probe can be written into it; use a model "
            "with a linear head (timm, ViT, ResNet, ConvNeXt, speech models, hftl's pooled text "
            "head: --pooling mean) or strategy full"
        )
    train, split, info = starting_features(
        model, args, train_dataset, data_collator=data_collator, processing_class=processing_class
    )
    write_probe(model, split, train.features, train.labels, info, seed=args.seed)
    return info


# --------------------------------------------------------------------------------------------
# Extraction and the on-disk cache
# --------------------------------------------------------------------------------------------


def extract(
    model: nn.Module,
    split: Split,
    dataset,
    collator,
    *,
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    num_workers: int = 0,
    channels_last: bool = False,
    progress: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One pass of the frozen backbone over ``dataset``: (features [N, D] float32, labels [N]);
    ``progress``: the description of a progress bar (None: no bar)."""
    from tqdm.auto import tqdm

    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        collate_fn=collator,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    was_training = model.training
    model.eval()
    features, labels = [], []
    try:
        with torch.inference_mode():
            for batch in tqdm(loader, desc=progress, disable=progress is None, leave=False):
                batch = {
                    k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                    for k, v in batch.items()
                }
                if channels_last:
                    batch = to_channels_last(batch)
                with torch.autocast(
                    device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
                ):
                    out = split.extract(model, batch)
                features.append(out.float().cpu().numpy())
                labels.append(batch["labels"].cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(features), np.concatenate(labels)


def cache_key(model: nn.Module, split: Split, dataset, preprocessing: str, dtype: str) -> str:
    """sha256 of the frozen weights, the model config, the data and the preprocessing."""
    digest = hashlib.sha256()
    digest.update(f"hftl-features-v1|{split.name}|{dtype}|{preprocessing}".encode())
    digest.update(model.config.to_json_string(use_diff=False).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    fingerprint = getattr(dataset, "_fingerprint", None)
    if fingerprint is None:
        raise ValueError("feature cache: the dataset has no fingerprint (use a datasets.Dataset)")
    digest.update(f"|{fingerprint}|{len(dataset)}".encode())
    return digest.hexdigest()[:32]


def describe_preprocessing(dataset, collator, processing_class) -> str:
    """What turns a row into model inputs: the processor's settings, the transform, the collator."""
    parts = [type(collator).__name__]
    if processing_class is not None:
        to_json = getattr(processing_class, "to_json_string", None)
        parts.append(to_json() if to_json else repr(processing_class))
    transform = transform_of(dataset)
    if transform is not None:
        parts.append(getattr(transform, "hftl_description", repr(transform)))
    return "|".join(parts)


def cached_features(key: str, compute: Callable[[], tuple[np.ndarray, np.ndarray]],
                    directory: Path | None, is_main: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Load ``key`` from ``directory`` (memory-mapped) or compute, store (main process) and load."""
    if directory is None:
        return compute()
    features_path = directory / f"{key}.features.npy"
    labels_path = directory / f"{key}.labels.npy"
    if features_path.exists() and labels_path.exists():
        logger.debug("feature cache: reusing %s", features_path)
        return np.load(features_path, mmap_mode="r"), np.load(labels_path)
    features, labels = compute()
    if is_main:
        directory.mkdir(parents=True, exist_ok=True)
        for path, array in ((features_path, features), (labels_path, labels)):
            partial = path.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(partial, array)
            os.replace(partial, path)  # a crash leaves no half-written cache entry
        logger.debug("feature cache: stored %s (%s)", features_path, _size(features))
    return features, labels


def _size(array: np.ndarray) -> str:
    return f"{array.shape[0]} x {array.shape[1]}, {array.nbytes / 2**20:.1f} MiB"


# --------------------------------------------------------------------------------------------
# Linear probe: logistic regression on the cached features, written into the classifier
# --------------------------------------------------------------------------------------------

PROBE_CS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


def fit_linear_probe(features, labels, num_labels: int, seed: int = 0) -> dict:
    """Standardised multinomial logistic regression, C picked by stratified k-fold CV.

    Returns ``weight`` [num_labels, D] and ``bias`` [num_labels] for raw (unstandardised)
    features, so the probe is exactly one ``nn.Linear``, plus the chosen ``C`` and its CV accuracy.
    """
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV, StratifiedKFold
    except ImportError as error:  # pragma: no cover - exercised only without scikit-learn
        raise ImportError(
            "linear_probe needs scikit-learn: pip install scikit-learn (or hftl[probe])"
        ) from error
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    mean, std = x.mean(0), x.std(0) + 1e-6
    folds = int(min(5, np.bincount(y).min()))
    if folds < 2:
        raise ValueError("linear_probe: every label needs at least 2 training examples")
    search = GridSearchCV(
        LogisticRegression(max_iter=2000),
        {"C": list(PROBE_CS)},
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
        scoring="accuracy",
    )
    search.fit((x - mean) / std, y)
    probe = search.best_estimator_
    coef, intercept = probe.coef_, probe.intercept_
    if coef.shape[0] == 1:  # binary: sklearn keeps one row; softmax of (-z/2, z/2) is sigmoid(z)
        coef, intercept = (
            np.vstack([-coef / 2, coef / 2]),
            np.array([-intercept[0] / 2, intercept[0] / 2]),
        )
    weight = np.zeros((num_labels, x.shape[1]))
    bias = np.full(num_labels, -1e4)  # a label absent from the training data is never predicted
    weight[probe.classes_] = coef / std
    bias[probe.classes_] = intercept - (coef / std) @ mean
    return {
        "weight": torch.tensor(weight, dtype=torch.float32),
        "bias": torch.tensor(bias, dtype=torch.float32),
        "C": float(search.best_params_["C"]),
        "cv_accuracy": float(search.best_score_),
        "folds": folds,
    }
