"""``feature_extraction``: the pretrained backbone stays frozen; only the new head trains.

The frozen backbone is a fixed function, so the recipes compute its features once and train the
head on them (:mod:`hftl.feature_cache`, ``feature_cache``); ``linear_probe`` fits the head by
logistic regression on those features instead of gradient steps. With a frozen backbone the
training data is not augmented unless asked for; augmented data is cached as
``feature_cache_views`` random views of each example, and epoch ``e`` reads view ``e mod views``.
"""

import logging
from dataclasses import dataclass, field

from hftl.strategies.base import Strategy

logger = logging.getLogger(__name__)


@dataclass
class FeatureExtractionArguments:
    feature_cache: bool = field(
        default=True,
        metadata={
            "help": "strategy=feature_extraction: run the frozen backbone once over the data and "
            "train the head on the stored features."
        },
    )
    feature_cache_views: int = field(
        default=5,
        metadata={
            "help": "strategy=feature_extraction with augmented training data (--augmentation "
            "true): how many random views of each training example are cached; epoch e trains "
            "on view e mod N (no more views than epochs are computed). Costs N backbone passes "
            "over the training data."
        },
    )
    feature_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where cached features are kept, memory-mapped and keyed by a hash of weights, "
            "data and preprocessing (default: $HFTL_CACHE/features; 'memory': in memory only)."
        },
    )
    linear_probe: bool = field(
        default=False,
        metadata={
            "help": "strategy=feature_extraction: instead of gradient steps, fit a scikit-learn "
            "logistic regression (C chosen by cross-validation) on the cached features and write "
            "it into the model's linear classifier. For tiny datasets; needs scikit-learn."
        },
    )


def fitted_probe(training: dict) -> str:
    """``(C = ..., chosen by k-fold cross-validation, CV accuracy ...)`` for the card, from the
    run's linear probe record (the label shape's probe: its strength and CV metric); empty where
    the run fitted none."""
    probe = (training.get("feature_cache") or {}).get("linear_probe")
    if not probe:
        return ""
    strength = probe.get("parameter", "C")  # ridge (regression): alpha
    metric = probe.get("cv_metric", "accuracy")
    score = probe.get("cv_score", probe.get("cv_accuracy"))  # runs from before label shapes
    return (
        f"({strength} = {probe['C']:g}, chosen by {probe['folds']}-fold cross-validation, CV "
        f"{metric} {score:.3f})"
    )


class FeatureExtraction(Strategy):
    name = "feature_extraction"
    summary = "the backbone is frozen, only the new head trains (features cached)"
    arguments = FeatureExtractionArguments
    frozen_backbone = True
    moves_pretrained_weights = False
    ranges = {"feature_cache_views": (1, True)}
    learning_rate_scale = 50.0  # only the new head trains: far larger steps than fine-tuning

    def advised(self, task, num_blocks):
        return {"linear_probe": True}, {
            "learning_rate": f"{self.learning_rate_scale:g}x the task's base rate "
            f"{task.learning_rate:g}: only the new head trains, from the linear probe fitted on "
            "the features"
        }

    def check(self, args, selected):
        if args.linear_probe and (not selected or not args.feature_cache):
            raise ValueError(
                "linear_probe needs strategy=feature_extraction with feature_cache=true (it fits "
                "the classifier on the cached features)"
            )
        if args.linear_probe and (args.num_train_epochs or args.max_steps > 0):
            # the fitted probe is the classifier: no gradient steps after it
            logger.info("linear_probe: the fitted probe is the classifier; num_train_epochs 0")
            args.num_train_epochs, args.max_steps = 0, -1

    def min_depth(self, num_blocks, *, num_trainable_layers=None, stage=0):
        return num_blocks + 1

    def describe(self, training, lr_note):
        probe = fitted_probe(training)
        if probe:
            return (
                "Feature extraction with a linear probe: the pretrained backbone stayed frozen; a "
                f"logistic regression on its features {probe} became the classifier."
            )
        return (
            "Feature extraction: the pretrained backbone stayed frozen; only a new classification "
            "head was trained."
        )
