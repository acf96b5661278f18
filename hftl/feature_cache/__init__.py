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

A *split* (:class:`hftl.families.Split`) says, per model family, where the backbone ends:
``extract(model, batch)`` returns what the head reads, ``head(model, features)`` the logits, so
that ``head(extract(x)) == model(x)`` in eval mode (tests/test_feature_cache.py checks this for
every family).

The modules: :mod:`.cache` (the step before the Trainer, LP-FT's probe features, the starting
features ``hftl advise`` scores), :mod:`.model` (the head on features and the feature dataset),
:mod:`.store` (extraction and the on-disk cache), :mod:`.probe` (the linear probe).
"""

from hftl.feature_cache.cache import (
    CachedFeatures,
    cache_features,
    is_random,
    num_views,
    probe_head,
    starting_features,
)
from hftl.feature_cache.model import CachedFeatureModel, FeatureDataset, unwrap
from hftl.feature_cache.probe import LinearProbeCallback, write_probe
from hftl.feature_cache.store import (
    cache_key,
    cached_features,
    describe_preprocessing,
    extract,
    transform_of,
)

__all__ = [
    "CachedFeatureModel",
    "CachedFeatures",
    "FeatureDataset",
    "LinearProbeCallback",
    "cache_features",
    "cache_key",
    "cached_features",
    "describe_preprocessing",
    "extract",
    "is_random",
    "num_views",
    "probe_head",
    "starting_features",
    "transform_of",
    "unwrap",
    "write_probe",
]
