"""Linear probe: the label shape's linear model on the cached features (logistic regression, one
per label, or ridge; its strength by cross-validation), written into the model's linear head."""

from __future__ import annotations

import logging

import numpy as np
from torch import nn
from transformers import TrainerCallback

from hftl.families import Split
from hftl.feature_cache.model import FeatureDataset, unwrap
from hftl.shapes import LabelSpec

logger = logging.getLogger(__name__)


class LinearProbeCallback(TrainerCallback):
    """``linear_probe``: when training begins, fit a logistic regression on the training
    features and write it into the model's linear classifier (the head's initialisation)."""

    def __init__(self, train: FeatureDataset, split: Split, info: dict, label_spec: LabelSpec,
                 seed: int = 0):  # fmt: skip
        self.train, self.split, self.info, self.seed = train, split, info, seed
        self.label_spec = label_spec

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step > 0:  # resumed: the head is the checkpoint's
            return
        views = self.train.views  # every augmented view is a training example for the probe
        probe = write_probe(
            unwrap(model),
            self.split,
            np.concatenate(views) if len(views) > 1 else views[0],
            np.concatenate([self.train.labels] * len(views)),
            self.info,
            self.label_spec,
            seed=self.seed,
        )
        state.log_history.append(
            {"probe_C": probe["C"], "probe_cv_score": round(probe["cv_score"], 4),
             "probe_seconds": probe["seconds"], "step": 0}
        )  # fmt: skip


def write_probe(model: nn.Module, split: Split, features, labels, info: dict,
                label_spec: LabelSpec, seed: int = 0):  # fmt: skip
    """Fit the label shape's linear probe on ``features`` and write it into ``model``'s head; the
    probe's C (ridge: alpha), CV score, folds and seconds go into ``info["linear_probe"]`` (and
    are returned)."""
    import time

    started = time.perf_counter()
    probe = label_spec.shape.fit_probe(label_spec, features, labels, seed)
    split.set_linear(model, probe["weight"], probe["bias"])
    record = {k: probe[k] for k in ("C", "cv_score", "cv_metric", "folds")}
    record["parameter"] = probe.get("parameter", "C")
    record["seconds"] = round(time.perf_counter() - started, 3)
    info["linear_probe"] = record
    logger.info(
        "linear probe: %s=%g (%d-fold CV %s %.3f) in %.1f s, written into the head",
        record["parameter"], probe["C"], probe["folds"], probe["cv_metric"], probe["cv_score"],
        record["seconds"],
    )  # fmt: skip
    return record
