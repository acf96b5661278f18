"""The step before the Trainer: the features of every dataset (computed once, or reused), the
head-on-features model; LP-FT's probe and ``hftl advise`` read the starting features the same way."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import default_data_collator

from hftl.errors import ConfigError
from hftl.families import Split, split_for
from hftl.fast import autocast_dtype, wants_channels_last
from hftl.feature_cache.model import CachedFeatureModel, FeatureDataset
from hftl.feature_cache.probe import LinearProbeCallback, write_probe
from hftl.feature_cache.store import (
    cache_key,
    cached_features,
    describe_preprocessing,
    entry_paths,
    extract,
    load_entry,
    store_labels_then,
    transform_of,
)
from hftl.shapes import LabelSpec
from hftl.storage import cache_dir

logger = logging.getLogger(__name__)


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
                   data_collator=None, processing_class=None,
                   label_spec: LabelSpec | None = None) -> CachedFeatures | None:  # fmt: skip
    """Run the frozen backbone of ``model`` once over the data (or reuse the features stored for
    these weights, data and preprocessing); None where hftl does not know where the model's
    backbone ends (the Trainer then runs the frozen backbone every step).

    ``eval_dataset`` may be one dataset or a dict of them, as for ``Trainer``. ``label_spec``:
    the run's labels (their loss and linear probe; default: what the model's config says).
    """
    label_spec = label_spec or LabelSpec.from_config(getattr(model, "config", None))
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
    # id(dataset) -> (the dataset, its features). The dataset is held so that its id cannot be
    # given to another one while the entry lives: a new dataset at a freed one's address would
    # otherwise be answered with the old one's features.
    done: dict[int, tuple[object, FeatureDataset]] = {}

    def features_of(dataset):
        if dataset is None or isinstance(dataset, FeatureDataset):
            return dataset
        if isinstance(dataset, dict):
            return {name: features_of(d) for name, d in dataset.items()}
        if id(dataset) not in done:
            features = _extract_cached(
                model, split, dataset, data_collator, processing_class, args, channels_last, info
            )
            done[id(dataset)] = dataset, features
        return done[id(dataset)][1]

    views = num_views(args, train_dataset)
    if views > 1:
        train = _extract_views(model, split, train_dataset, data_collator, processing_class, args,
                               channels_last, info, views)  # fmt: skip
        done[id(train_dataset)] = train_dataset, train
    else:
        train = features_of(train_dataset)
    info["views"] = views
    info["train_seconds"] = info["seconds"]  # the training set's share (the rest: evaluation)
    callbacks = []
    if args.linear_probe:
        callbacks.append(LinearProbeCallback(train, split, info, label_spec, seed=args.seed))
    return CachedFeatures(
        model=CachedFeatureModel(model, split, loss=label_spec.loss),
        train=train,
        eval=features_of(eval_dataset),
        callbacks=callbacks,
        info=info,
        extractor=features_of,
    )


def _channels_last(model: nn.Module, args) -> bool:
    """Whether the backbone runs channels-last (``--channels_last``; the model is converted)."""
    channels_last = wants_channels_last(model, args.channels_last)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return channels_last


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
        one = _extract_cached(model, split, dataset, collator, processing_class, args,
                              channels_last, info, view=f"view {view + 1}/{views}",
                              seed=args.seed * 7919 + view)  # fmt: skip
        if labels is not None and not np.array_equal(labels, one.labels):
            raise RuntimeError("feature cache: the views of the training set differ in labels")
        arrays.append(one.features)
        labels = one.labels
    return FeatureDataset(arrays, labels)


def _entries(directory) -> set[str]:
    if directory is None or not directory.exists():
        return set()
    return {p.name.split(".")[0] for p in directory.glob("*.features.npy")}


def _extract_cached(model, split, dataset, collator, processing_class, args, channels_last, info,
                    view: str | None = None, seed: int = 0) -> FeatureDataset:  # fmt: skip
    """The FeatureDataset of one dataset (extracted once, or read from the cache); ``view``
    names one augmented view (keyed by it and the seed; its random draws come from ``seed``,
    batch by batch)."""
    import time

    directory = args.feature_cache_dir
    if directory is None:
        directory = cache_dir() / "features"
    directory = None if str(directory) == "memory" else Path(directory)
    dtype = autocast_dtype(args)  # as the Accelerator trains: --bf16, or the launch's config
    preprocessing = describe_preprocessing(dataset, collator, processing_class)
    batch_size = max(args.per_device_eval_batch_size, args.per_device_train_batch_size)
    if getattr(dataset, "_fingerprint", None) is None:
        directory, key = None, "in-memory"  # not a datasets.Dataset: nothing to key a file on
    else:
        layout = "|channels_last" if channels_last else ""
        # a view's random draws are seeded batch by batch: another batch size draws others
        views = f"|{view}|seed {args.seed}|seeded per batch of {batch_size}" if view else ""
        key = cache_key(model, split, dataset, preprocessing, f"{dtype}{layout}{views}")
    device = args.device
    model.to(device)
    started = time.perf_counter()
    before = _entries(directory)
    # random augmentation: each batch's draws seeded by its index (the same on any number of ranks)
    seed = seed if view and is_random(dataset) else None

    def compute(start: int = 0, stop: int | None = None, into: Path | None = None):
        return extract(
            model, split, dataset, collator, batch_size=batch_size, device=device,
            autocast_dtype=dtype, num_workers=args.dataloader_num_workers,
            channels_last=channels_last, start=start, stop=stop, seed=seed, into=into,
            progress=None if args.disable_tqdm or not args.should_log else f"features{f' ({view})' if view else ''}",
        )  # fmt: skip

    if _world_size() > 1:  # each rank extracts its share; every rank ends with all of them
        features, labels = _extract_across_ranks(key, directory, len(dataset), batch_size,
                                                 compute, args, info)  # fmt: skip
    else:
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


def _world_size() -> int:
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_world_size() if distributed else 1


CHUNK_BYTES = 16 * 2**20  # what one broadcast of a distributed extraction carries


def _extract_across_ranks(key: str, directory: Path | None, rows: int, batch_size: int,
                          compute: Callable, args, info: dict) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """A distributed extraction: where every rank finds the entry in its cache directory, each
    reads it; else each rank extracts a contiguous share of whole batches (rank r: batches
    r * B / W to (r + 1) * B / W), streamed into a file of its own, and the shares are
    broadcast in rank order, a chunk at a time, to the one rank per cache directory that writes
    the entry (the lowest rank that sees the directory: one per directory the ranks share, per
    machine, or per rank), so memory stays at a chunk. Every rank then reads the entry
    memory-mapped (``--feature_cache_dir memory``: every rank keeps the whole array). The ranks'
    examples and seconds go into ``info["ranks"]``."""
    import time

    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    found = load_entry(key, directory)
    everywhere = [None] * world
    dist.all_gather_object(everywhere, found is not None)
    shares = info.setdefault("ranks", [{"rank": r, "examples": 0, "seconds": 0.0}
                                       for r in range(world)])  # fmt: skip
    if all(everywhere):
        return found
    batches = math.ceil(rows / batch_size)
    start = min(rows, rank * batches // world * batch_size)
    stop = min(rows, (rank + 1) * batches // world * batch_size)
    own = None
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        own = directory / f"{key}.share{rank}.{os.getpid()}.tmp.npy"
    began = time.perf_counter()
    features, labels = compute(start, stop, into=own) if stop > start else (None, None)
    shapes = [None] * world
    dist.all_gather_object(shapes, (
        stop - start, None if features is None else tuple(features.shape[1:]), labels,
        time.perf_counter() - began,
    ))  # fmt: skip
    for share, (count, _, _, seconds) in zip(shares, shapes, strict=True):
        share["examples"] += count
        share["seconds"] = round(share["seconds"] + seconds, 3)
    shape = next(s for count, s, _, _ in shapes if count)
    labels = np.concatenate([lab for count, _, lab, _ in shapes if count])
    writes = _writes_for_directory(key, directory, rank, world) and found is None
    if directory is None:
        target = np.empty((rows, *shape), dtype=np.float32)
    elif writes:
        partial = entry_paths(key, directory)[0].with_suffix(f".{os.getpid()}.tmp.npy")
        target = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32,
                                           shape=(rows, *shape))  # fmt: skip
    else:
        target = None
    device = args.device if dist.get_backend() == "nccl" else torch.device("cpu")
    chunk_rows = max(1, CHUNK_BYTES // (4 * math.prod(shape)))
    offset = 0
    for source, (count, _, _, _) in enumerate(shapes):
        for begin in range(0, count, chunk_rows):
            size = min(chunk_rows, count - begin)
            if source == rank:
                chunk = torch.from_numpy(np.ascontiguousarray(features[begin : begin + size]))
            else:
                chunk = torch.empty((size, *shape), dtype=torch.float32)
            chunk = chunk.to(device)
            dist.broadcast(chunk, src=source)
            if target is not None:
                target[offset + begin : offset + begin + size] = chunk.cpu().numpy()
        offset += count
    del features
    if own is not None:
        own.unlink(missing_ok=True)
    if directory is None:
        return target, labels
    if target is not None:  # this rank writes its directory's entry
        target.flush()
        del target
        store_labels_then(key, labels, directory, partial)
    dist.barrier()
    entry = load_entry(key, directory)
    if entry is None:
        raise RuntimeError(
            f"feature cache: rank {rank} finds no entry {key} in {directory} after the "
            "extraction; its writer did not write it"
        )
    return entry


def _writes_for_directory(key: str, directory: Path | None, rank: int, world: int) -> bool:
    """Whether this rank writes the entry into its cache directory: the lowest rank that sees
    the directory (each rank leaves a marker in its own, then looks which markers it sees)."""
    import uuid

    import torch.distributed as dist

    if directory is None:
        return True
    launch = [uuid.uuid4().hex]  # this extraction's own markers (a killed run may leave some)
    dist.broadcast_object_list(launch, src=0)
    marker = directory / f".{key}.{launch[0]}.rank{rank}.probe"
    marker.touch()
    dist.barrier()
    seen = [r for r in range(world)
            if (directory / f".{key}.{launch[0]}.rank{r}.probe").exists()]  # fmt: skip
    dist.barrier()
    marker.unlink(missing_ok=True)
    return min(seen) == rank


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
    features = _extract_cached(
        model, split, dataset, data_collator, processing_class, args, channels_last, info,
        view="probe view" if random_view else None, seed=args.seed * 7919,
    )  # fmt: skip
    return features, split, info


def probe_head(model: nn.Module, args, train_dataset, *, data_collator=None,
               processing_class=None, label_spec: LabelSpec | None = None) -> dict:  # fmt: skip
    """The first step of ``strategy: lp_ft``: the starting backbone's features of the training
    set (:func:`starting_features`), the label shape's linear probe (logistic regression, one
    per label, or ridge) fitted on them and written into ``model``'s head, in place. Returns the
    record for ``run_info.json`` (``linear_probe``: C, CV score, folds, seconds).

    A model whose head is not linear on the features it reads (BERT's pooler, DistilBERT's
    pre-classifier, RoBERTa's dense layer) is a one-line ``ConfigError``.
    """

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
    label_spec = label_spec or LabelSpec.from_config(getattr(model, "config", None))
    write_probe(model, split, train.features, train.labels, info, label_spec, seed=args.seed)
    return info
