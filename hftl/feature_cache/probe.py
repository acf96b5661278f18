"""Linear probe: a logistic regression on the cached features (C by cross-validation), written
into the model's linear classifier."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn
from transformers import TrainerCallback

from hftl.families import Split
from hftl.feature_cache.model import FeatureDataset, unwrap

logger = logging.getLogger(__name__)


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
