"""``TransferTrainer``: a ``transformers.Trainer`` that knows transfer-learning strategies.

It adds to Trainer and keeps every other Trainer feature (evaluation, checkpoints, resume,
callbacks, Accelerate / DDP, logging, Hub pushes):

* the strategy is applied before training (``feature_extraction`` / ``partial`` freeze once, before
  Accelerate wraps the model; ``gradual`` runs :class:`GradualUnfreezingCallback`; ``lora`` wraps
  the model with PEFT, see :func:`hftl.models.wrap_with_lora`);
* the optimizer is built from :func:`hftl.param_groups` (layer-wise LR decay, head LR, no weight
  decay on norms/biases/tokens, absolute LR per group so the scheduler scales every group);
* ``early_stopping_patience`` adds transformers' ``EarlyStoppingCallback``;
* checkpoints are marked complete once written and read back exactly, the way ``from_pretrained``
  reads them, on resume and for ``load_best_model_at_end`` (:mod:`hftl.checkpoints`).

Gradual unfreezing under DDP: every parameter is trainable when DDP wraps the model (so all of
them are registered with its reducer and stay synchronised once unfrozen) and is in the optimizer
from the start; the callback freezes in ``on_train_begin``, after wrapping. Frozen parameters get
no gradient, so AdamW skips them. This needs ``ddp_find_unused_parameters=True``, which is set.
"""

from __future__ import annotations

import logging
import math

import torch
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, default_data_collator
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

try:  # transformers >= 5: optimizer factories (Muon, Dion) build their own groups
    from transformers.trainer_optimizer import is_optimizer_factory
except ImportError:  # pragma: no cover - older transformers

    def is_optimizer_factory(optimizer_cls) -> bool:
        return False


from hftl.checkpoints import CheckpointCallback, read_weights, resolve_resume, start_checkpoints
from hftl.config import TransferTrainingArguments
from hftl.fast import to_channels_last, wants_channels_last
from hftl.feature_cache import (
    CachedFeatureModel,
    FeatureDataset,
    cache_key,
    cached_features,
    describe_preprocessing,
    extract,
    fit_linear_probe,
    split_for,
)
from hftl.feature_cache import unwrap as unwrap_cached
from hftl.freezing import (
    apply_strategy,
    check_num_trainable_layers,
    gradual_stage,
    keep_frozen_norms_in_eval,
    min_trainable_depth,
    set_trainable,
)
from hftl.layers import LayerMap, build_layer_map
from hftl.models import wrap_with_lora
from hftl.optim import param_groups

logger = logging.getLogger(__name__)


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' ``LengthGroupedSampler`` with each epoch's order a function of (seed, epoch).

    transformers draws the order from the global RNG when the epoch starts; a run resumed in the
    middle of a later epoch starts that epoch from another RNG state and trains on another order
    than the uninterrupted run did. The epoch comes from :class:`SamplerEpochCallback` (and from
    Accelerate's ``set_epoch`` where that reaches the sampler).
    """

    def __init__(self, *args, seed: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class SamplerEpochCallback(TrainerCallback):
    """Sets the epoch of a :class:`SeededLengthGroupedSampler` from the trainer state when an
    epoch begins. Accelerate's ``set_epoch`` reaches it through two wrappers, but a resume under
    DDP adds a third (batch skipping around the per-process shards), and the sampler would then
    replay epoch 0's order."""

    def __init__(self):
        self.sampler: SeededLengthGroupedSampler | None = None

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.sampler is not None:  # state.epoch: epochs done (fractional on a resume)
            self.sampler.set_epoch(math.floor((state.epoch or 0.0) + 1e-6))


def _entries(directory) -> set[str]:
    if directory is None or not directory.exists():
        return set()
    return {p.name.split(".")[0] for p in directory.glob("*.features.npy")}


class GradualUnfreezingCallback(TrainerCallback):
    """Unfreeze one more block, top-down, every ``every`` epochs or steps.

    Stage 0 trains the head only; stage ``s`` trains the top ``s`` blocks and the head; from stage
    ``L + 1`` on, the embeddings train too. The stage is computed from the trainer state, so a run
    resumed from a checkpoint continues at the right stage.

    Attributes:
        history: ``(global_step, epoch, min_trainable_depth)`` each time the frozen set changed.
    """

    def __init__(self, layer_map: LayerMap, every: int = 1, unit: str = "epoch"):
        if unit not in ("epoch", "step"):
            raise ValueError(f"unfreeze_unit must be 'epoch' or 'step', got {unit!r}")
        gradual_stage(0, every)  # validates `every`
        self.layer_map, self.every, self.unit = layer_map, every, unit
        self.min_depth: int | None = None
        self.history: list[tuple[int, float, int]] = []

    def stage(self, state) -> int:
        if self.unit == "step":
            progress = state.global_step
        else:  # at an epoch's start state.epoch is the number of epochs done (maybe fractional on resume)
            progress = math.floor((state.epoch or 0.0) + 1e-6)
        return gradual_stage(progress, self.every)

    def _update(self, model, state) -> None:
        min_depth = min_trainable_depth(
            "gradual", self.layer_map.num_blocks, stage=self.stage(state)
        )
        if min_depth == self.min_depth:
            return
        set_trainable(model, self.layer_map, min_depth)
        self.min_depth = min_depth
        self.history.append((state.global_step, state.epoch or 0.0, min_depth))
        if state.is_world_process_zero:
            logger.info(
                "gradual unfreezing at step %d (epoch %.2f): depths >= %d now train (of 0..%d)",
                state.global_step,
                state.epoch or 0.0,
                min_depth,
                self.layer_map.head_depth,
            )

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._update(model, state)

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        if self.unit == "epoch":
            self._update(model, state)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if self.unit == "step":
            self._update(model, state)


class TransferTrainer(Trainer):
    """A Trainer that applies ``args.strategy`` and builds layer-wise LR groups.

    Args:
        model: a model :func:`hftl.layer_ids` understands (any ``AutoModelFor...``, timm).
        args: :class:`~hftl.TransferTrainingArguments`.
        layer_map: optional precomputed :class:`~hftl.layers.LayerMap` (e.g. with overrides).
        *args, **kwargs: everything else ``transformers.Trainer`` takes.

    Example:
        >>> args = TransferTrainingArguments("out", strategy="partial", num_trainable_layers=2,
        ...                                  layer_decay=0.8, head_lr_multiplier=10)
        >>> TransferTrainer(model, args, train_dataset=train, eval_dataset=val).train()
    """

    def __init__(self, model=None, args=None, *pargs, layer_map: LayerMap | None = None, **kwargs):
        if model is None:
            raise ValueError("TransferTrainer needs a model (model_init is not supported)")
        if args is None:
            args = TransferTrainingArguments(output_dir="trainer_output")
        if not isinstance(args, TransferTrainingArguments):
            raise TypeError(
                f"TransferTrainer needs hftl.TransferTrainingArguments, got {type(args).__name__}: "
                "build the arguments with TransferTrainingArguments(...) instead"
            )
        if args.strategy == "lora" and not hasattr(model, "peft_config"):
            model = wrap_with_lora(model, args)
        self.layer_map = layer_map or build_layer_map(model)
        if args.strategy == "partial":
            check_num_trainable_layers(
                args.num_trainable_layers, self.layer_map.num_blocks, type(model).__name__
            )
        if args.strategy == "gradual":
            # Everything trainable now, so DDP registers every parameter and the optimizer holds
            # them all; the callback freezes in on_train_begin, after wrapping.
            set_trainable(model, self.layer_map, 0)
            if args.ddp_find_unused_parameters is None:
                args.ddp_find_unused_parameters = True
            self.unfreezing = GradualUnfreezingCallback(
                self.layer_map, every=args.unfreeze_every, unit=args.unfreeze_unit
            )
            # First, so that the user's callbacks see this step's trainable set.
            kwargs["callbacks"] = [self.unfreezing, *(kwargs.get("callbacks") or [])]
        elif args.strategy == "lora":
            self.unfreezing = None  # PEFT froze the base model; frozen BatchNorm stays in eval
            keep_frozen_norms_in_eval(model)
        else:
            self.unfreezing = None
            apply_strategy(
                model,
                self.layer_map,
                args.strategy,
                num_trainable_layers=args.num_trainable_layers,
            )
        self.channels_last = wants_channels_last(model, args.channels_last)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.feature_cache = None
        if args.strategy == "feature_extraction" and args.feature_cache:
            self.args = args  # Trainer.__init__ sets it again
            model, kwargs = self._use_cached_features(model, kwargs)
        # First: the resumed / best weights are in place before any other callback sees the model.
        self.checkpoints = CheckpointCallback()
        self.sampler_epoch = SamplerEpochCallback()
        kwargs["callbacks"] = [
            self.checkpoints,
            self.sampler_epoch,
            *(kwargs.get("callbacks") or []),
        ]
        if args.early_stopping_patience:
            kwargs["callbacks"] = [
                *(kwargs.get("callbacks") or []),
                EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience),
            ]
        super().__init__(model, args, *pargs, **kwargs)
        # FSDP and DeepSpeed checkpoints are sharded their own way; Trainer reads those.
        self.checkpoints.exact_loading = not (self.is_fsdp_enabled or self.is_deepspeed_enabled)

    def _save(self, output_dir=None, state_dict=None):
        # Trainer pickles its arguments into training_args.bin next to every saved model; a
        # --hub_token must not travel with them (into checkpoints, onto the Hub, to a colleague).
        # With cached features, what is saved is the full model, not the head-on-features wrapper.
        token, self.args.hub_token = self.args.hub_token, None
        wrapper = self.model
        self.model = unwrap_cached(wrapper)
        try:
            super()._save(output_dir, None if wrapper is not self.model else state_dict)
        finally:
            self.args.hub_token = token
            self.model = wrapper

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if isinstance(dataset, FeatureDataset) and self.args.train_sampling_strategy in (
            "group_by_length",
            "batch_rebalance",
        ):  # cached features all have one length: nothing to group
            return torch.utils.data.RandomSampler(dataset)
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler:  # resumable: the order depends on seed and epoch
            seeded = SeededLengthGroupedSampler(sampler.batch_size, lengths=sampler.lengths,
                                                seed=self.args.data_seed or self.args.seed)  # fmt: skip
            self.sampler_epoch.sampler = seeded
            return seeded
        return sampler

    def _get_eval_sampler(self, eval_dataset):
        # transformers 5 also length-groups evaluation under group_by_length, which hands
        # predict() its rows shuffled; evaluation and prediction keep the dataset's order here.
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_eval_sampler(eval_dataset)
        if eval_dataset is None or not hasattr(eval_dataset, "__len__"):
            return None
        return (
            torch.utils.data.SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None
        )

    def _prepare_inputs(self, inputs):
        inputs = super()._prepare_inputs(inputs)
        return to_channels_last(inputs) if self.channels_last else inputs

    # ----- cached feature extraction (hftl/feature_cache.py) -----

    def _use_cached_features(self, model, kwargs):
        """Swap the model for its head on features, and the datasets for their features."""
        split = split_for(model)
        train = kwargs.get("train_dataset")
        if split is None or train is None:
            logger.info(
                "feature cache: not available for %s; the frozen backbone runs every step",
                type(model).__name__,
            )
            return model, kwargs
        self.feature_cache = {
            "split": split.name,
            "model": model,
            "collator": kwargs.get("data_collator"),
            "processing_class": kwargs.get("processing_class"),
            "datasets": {},
            "seconds": 0.0,
            "examples": 0,
            "reused": 0,
        }
        self._feature_split = split
        kwargs["train_dataset"] = self._features_of(train)  # evaluation data: when first evaluated
        kwargs["data_collator"] = default_data_collator
        wrapper = CachedFeatureModel(model, split)
        self.layer_map = LayerMap(
            depths={f"model.{name}": depth for name, depth in self.layer_map.depths.items()},
            num_blocks=self.layer_map.num_blocks,
        )
        return wrapper, kwargs

    def _features_of(self, dataset):
        """The FeatureDataset of a dataset in the full model's format (extracted once, cached)."""
        import time
        from pathlib import Path

        from hftl.assets import cache_dir

        cache = self.feature_cache
        if id(dataset) in cache["datasets"]:
            return cache["datasets"][id(dataset)]
        args = self.args
        model = cache["model"]
        directory = args.feature_cache_dir
        if directory is None:
            directory = cache_dir() / "features"
        directory = None if str(directory) == "memory" else Path(directory)
        dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
        preprocessing = describe_preprocessing(
            dataset, cache["collator"], cache["processing_class"]
        )
        if getattr(dataset, "_fingerprint", None) is None:
            directory, key = None, "in-memory"  # not a datasets.Dataset: nothing to key a file on
        else:
            layout = "|channels_last" if self.channels_last else ""
            key = cache_key(model, self._feature_split, dataset, preprocessing, f"{dtype}{layout}")
        device = args.device
        model.to(device)
        started = time.perf_counter()
        before = _entries(directory)

        def compute():
            return extract(
                model, self._feature_split, dataset, cache["collator"],
                batch_size=max(args.per_device_eval_batch_size, args.per_device_train_batch_size),
                device=device, autocast_dtype=dtype, num_workers=args.dataloader_num_workers,
                channels_last=self.channels_last,
            )  # fmt: skip

        with args.main_process_first(desc="feature extraction"):
            features, labels = cached_features(key, compute, directory, args.should_save)
        seconds = time.perf_counter() - started
        cache["seconds"] += seconds
        cache["examples"] += len(labels)
        cache["reused"] += int(directory is not None and key in before)
        logger.info(
            "feature cache: %d examples -> %s features in %.1f s (%s)",
            len(labels), "x".join(map(str, features.shape)), seconds,
            "reused" if directory is not None and key in before else "computed once",
        )  # fmt: skip
        result = FeatureDataset(features, labels)
        cache["datasets"][id(dataset)] = result
        return result

    def train(self, resume_from_checkpoint=None, *pargs, **kwargs):
        """``Trainer.train``, with checkpoints handled safely (see :mod:`hftl.checkpoints`).

        ``resume_from_checkpoint``: a checkpoint folder, or ``True`` for the last complete one in
        ``output_dir``. An incomplete checkpoint, or one that does not match the model tensor for
        tensor, is an error before anything trains. Starting at step 0 in an ``output_dir`` that
        holds another run's checkpoints is an error unless ``overwrite_output_dir``.
        """
        checkpoint = resolve_resume(resume_from_checkpoint, self.args.output_dir)
        start_checkpoints(self.args, checkpoint, self.checkpoints.written)
        if checkpoint is not None and self.checkpoints.exact_loading:
            self.checkpoints.pending = (checkpoint, read_weights(self.model, checkpoint))
        elif checkpoint is not None:
            logger.warning(
                "FSDP / DeepSpeed: %s is read by transformers' own loader, which hftl does not "
                "check tensor for tensor",
                checkpoint,
            )
        if self.args.linear_probe:
            return self._train_linear_probe()
        trainer_logger = logging.getLogger("transformers.trainer")
        trainer_logger.addFilter(self.checkpoints.filter)
        try:
            resume = None if checkpoint is None else str(checkpoint)
            return super().train(resume, *pargs, **kwargs)
        finally:
            trainer_logger.removeFilter(self.checkpoints.filter)
            self.checkpoints.pending = None

    def _train_linear_probe(self):
        """--linear_probe: logistic regression on the cached features, written into the head."""
        import time

        from transformers.trainer_utils import TrainOutput

        if self.feature_cache is None or self._feature_split.linear_head is None:
            raise ValueError(
                f"linear_probe needs a model whose head is one linear layer on cached features "
                f"(timm, ViT, ResNet, ConvNeXt); {type(unwrap_cached(self.model)).__name__} is not one"
            )
        started = time.perf_counter()
        data = self.train_dataset
        model = unwrap_cached(self.model)
        probe = fit_linear_probe(
            data.features, data.labels, model.config.num_labels, seed=self.args.seed
        )
        head = self._feature_split.linear_head(model)
        with torch.no_grad():
            head.weight.copy_(probe["weight"].to(head.weight))
            head.bias.copy_(probe["bias"].to(head.bias))
        seconds = time.perf_counter() - started
        metrics = {
            "train_runtime": round(seconds, 3),
            "probe_C": probe["C"],
            "probe_cv_accuracy": round(probe["cv_accuracy"], 4),
        }
        self.linear_probe = {k: probe[k] for k in ("C", "cv_accuracy", "folds")}
        self.state.log_history.append({**metrics, "step": 0})
        logger.info(
            "linear probe: C=%g (%d-fold CV accuracy %.3f) in %.1f s, written into the classifier",
            probe["C"], probe["folds"], probe["cv_accuracy"], seconds,
        )  # fmt: skip
        return TrainOutput(0, 0.0, metrics)

    def evaluate(self, eval_dataset=None, *pargs, **kwargs):
        if self.feature_cache is not None:
            eval_dataset = self._as_features(
                eval_dataset if eval_dataset is not None else self.eval_dataset
            )
        return super().evaluate(eval_dataset, *pargs, **kwargs)

    def predict(self, test_dataset, *pargs, **kwargs):
        if self.feature_cache is not None:
            test_dataset = self._as_features(test_dataset)
        return super().predict(test_dataset, *pargs, **kwargs)

    def _as_features(self, dataset):
        if dataset is None or isinstance(dataset, FeatureDataset):
            return dataset
        if isinstance(dataset, dict):
            return {name: self._as_features(d) for name, d in dataset.items()}
        return self._features_of(dataset)

    def create_optimizer(self, model=None):
        """Build the optimizer Trainer would, but over :func:`hftl.param_groups`."""
        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.model if model is None else model
        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(
                self.args, opt_model
            )
        if is_optimizer_factory(optimizer_cls) or {"params", "model", "optimizer_dict"} & set(
            optimizer_kwargs
        ):
            raise ValueError(
                f"optim={self.args.optim} builds its own parameter groups, so hftl cannot apply its "
                "layer-wise groups; use a standard optimizer such as optim=adamw_torch"
            )
        layer_map = self.layer_map if opt_model is self.model else build_layer_map(opt_model)
        groups = param_groups(
            opt_model,
            lr=self.args.learning_rate,
            layer_decay=self.args.layer_decay,
            head_lr_multiplier=self.args.head_lr_multiplier,
            weight_decay=self.args.weight_decay,
            include_frozen=self.args.strategy == "gradual",
            layer_map=layer_map,
            log=self.is_world_process_zero(),
        )
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer
