"""The head of a model on precomputed features, and the dataset of those features."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from hftl.families import Split


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

    def __init__(self, model: nn.Module, split: Split, loss=None):
        super().__init__()
        self.model = model
        self.split = split
        # the run's loss (its label shape's: LabelSpec.loss); cross-entropy by default
        self.loss = loss or (lambda logits, labels: F.cross_entropy(
            logits.float().view(-1, logits.shape[-1]), labels.view(-1)))  # fmt: skip
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
            loss = self.loss(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


class FeatureDataset(torch.utils.data.Dataset):
    """Rows ``{"features": tensor, "labels": tensor}`` (a class id, a multi-hot vector or target
    values) over a (possibly memory-mapped) array, or
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
            "labels": torch.as_tensor(np.asarray(self.labels[index])),
        }


def unwrap(model: nn.Module) -> nn.Module:
    """The full model behind a :class:`CachedFeatureModel` (anything else is returned as is)."""
    return model.model if isinstance(model, CachedFeatureModel) else model
