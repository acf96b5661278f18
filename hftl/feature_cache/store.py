"""The store: one pass of the frozen backbone over a dataset, and the on-disk cache keyed by a
hash of the weights, the data and the preprocessing (memory-mapped, written atomically)."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hftl.families import Split
from hftl.fast import to_channels_last

logger = logging.getLogger(__name__)


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


def transform_of(dataset):
    """The ``set_transform`` / ``with_transform`` function of a ``datasets.Dataset`` (or None)."""
    return getattr(dataset, "_format_kwargs", {}).get("transform")
