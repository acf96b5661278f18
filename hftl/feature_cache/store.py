"""The store: one pass of the frozen backbone over a dataset, and the on-disk cache keyed by a
hash of the weights, the data and the preprocessing (memory-mapped, written atomically)."""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Callable
from contextlib import contextmanager
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
    start: int = 0,
    stop: int | None = None,
    seed: int | None = None,
    into: Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One pass of the frozen backbone over rows ``start:stop`` of ``dataset`` (default: all):
    (features [N, D] float32, labels [N]); ``progress``: the description of a progress bar
    (None: no bar).

    ``into``: a ``.npy`` file the features stream into, batch by batch (the returned features
    are that file, memory-mapped): memory then grows with the batch, not with the dataset.

    ``seed``: random augmentation is drawn batch by batch from ``(seed, the batch's index in the
    whole dataset)``, so a slice that starts at a batch boundary gets the very views the whole
    pass gives (each rank of a distributed extraction takes such a slice)."""
    from tqdm.auto import tqdm

    rows = _Rows(dataset, start, len(dataset) if stop is None else stop, batch_size, seed)
    loader = torch.utils.data.DataLoader(
        rows,
        batch_size=batch_size,
        shuffle=False,
        collate_fn=collator,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    was_training = model.training
    model.eval()
    features, labels = [], []
    sink, written = None, 0
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
                    out = split.extract(model, batch).float().cpu().numpy()
                labels.append(batch["labels"].cpu().numpy())
                if into is None:  # a copy: ``out`` may view the whole batch's hidden states
                    features.append(out.copy())
                    continue
                if sink is None:
                    sink = np.lib.format.open_memmap(
                        into, mode="w+", dtype=np.float32, shape=(len(rows), *out.shape[1:])
                    )
                sink[written : written + len(out)] = out
                written += len(out)
    finally:
        model.train(was_training)
    if sink is not None:
        sink.flush()
        return sink, np.concatenate(labels)
    return np.concatenate(features), np.concatenate(labels)


class _Rows(torch.utils.data.Dataset):
    """Rows ``start:stop`` of a dataset, fetched a batch at a time (``__getitems__``, as
    DataLoader asks, in its workers too), each batch under its own seed where ``seed`` is given."""

    def __init__(self, dataset, start: int, stop: int, batch_size: int, seed: int | None):
        self.dataset, self.start, self.stop = dataset, start, stop
        self.batch_size, self.seed = batch_size, seed

    def __len__(self):
        return self.stop - self.start

    def __getitem__(self, index):
        return self.dataset[self.start + index]

    def __getitems__(self, indices):
        rows = [self.start + i for i in indices]
        fetch = getattr(self.dataset, "__getitems__", None)

        def get():
            return fetch(rows) if fetch is not None else [self.dataset[i] for i in rows]

        if self.seed is None:
            return get()
        with seeded(self.seed * 1_000_003 + rows[0] // self.batch_size):
            return get()


@contextmanager
def seeded(seed: int):
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
    found = load_entry(key, directory)
    if found is not None:
        return found
    if not is_main:
        return compute()
    directory.mkdir(parents=True, exist_ok=True)
    partial = entry_paths(key, directory)[0].with_suffix(f".{os.getpid()}.tmp.npy")
    features, labels = compute(into=partial)  # streamed to disk as the batches come
    del features  # the memory map, closed before the rename
    store_labels_then(key, labels, directory, partial)
    return load_entry(key, directory)


def store_labels_then(key: str, labels: np.ndarray, directory: Path, features: Path) -> None:
    """Complete an entry whose features were written to the ``.npy`` file ``features``: the
    labels, then the features renamed into place (their presence means complete)."""
    features_path, labels_path = entry_paths(key, directory)
    _save_atomically(labels_path, labels)
    os.replace(features, features_path)


def entry_paths(key: str, directory: Path) -> tuple[Path, Path]:
    return directory / f"{key}.features.npy", directory / f"{key}.labels.npy"


def load_entry(key: str, directory: Path | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The stored features (memory-mapped) and labels of ``key``; None where there are none."""
    if directory is None:
        return None
    features_path, labels_path = entry_paths(key, directory)
    if not (features_path.exists() and labels_path.exists()):
        return None
    logger.debug("feature cache: reusing %s", features_path)
    return np.load(features_path, mmap_mode="r"), np.load(labels_path)


def _save_atomically(path: Path, array: np.ndarray) -> None:
    partial = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(partial, array)
    os.replace(partial, path)


def transform_of(dataset):
    """The ``set_transform`` / ``with_transform`` function of a ``datasets.Dataset`` (or None)."""
    return getattr(dataset, "_format_kwargs", {}).get("transform")
