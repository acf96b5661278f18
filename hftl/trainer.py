"""``TransferTrainer``: a ``transformers.Trainer`` that knows transfer-learning strategies.

It extends Trainer only through its public hooks and keeps every other Trainer feature
(evaluation, checkpoints, resume, callbacks, Accelerate / DDP, logging, Hub pushes):

* ``__init__``: the registered strategy (:mod:`hftl.strategies`) wraps the model (LoRA) and sets
  what trains, once, before Accelerate wraps it; its callbacks (the unfreezing schedule) and the
  active guards' callbacks (:mod:`hftl.guards`, e.g. early stopping) are added;
* ``create_optimizer``: the optimizer over :func:`hftl.param_groups` (layer-wise LR decay, head
  LR, no weight decay on norms/biases/tokens, absolute LR per group so the scheduler scales every
  group);
* ``compute_loss``: the loss of the run's label shape (:mod:`hftl.shapes`: cross-entropy, BCE per
  label, MSE / Huber) plus the active guards' penalties, the same whether the model is the full
  model or its head on cached features (:mod:`hftl.feature_cache`, a step before the Trainer is
  built);
* ``train``: checkpoints are marked complete once written and read back exactly, the way
  ``from_pretrained`` reads them, on resume and for ``load_best_model_at_end``
  (:mod:`hftl.checkpoints`); after it, each active guard's ``after_training`` (WiSE-FT's mix);
* ``save_model``: a model trained on cached features is saved as the full model.

``train_sampling_strategy: group_by_length`` is served by :class:`LengthGroupedOrder`, a view of
the training set in transformers' length-grouped order, drawn from (seed, epoch), so a resumed
run sees the order the uninterrupted one did; evaluation keeps the dataset's order.
"""

from __future__ import annotations

import copy
import logging
import math

import torch
from transformers import Trainer, TrainerCallback, default_data_collator
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_pt_utils import get_length_grouped_indices

try:  # transformers >= 5: optimizer factories (Muon, Dion) build their own groups
    from transformers.trainer_optimizer import is_optimizer_factory
except ImportError:  # pragma: no cover - older transformers

    def is_optimizer_factory(optimizer_cls) -> bool:
        return False


from hftl.checkpoints import CheckpointCallback, read_weights, resolve_resume, start_checkpoints
from hftl.config import TransferTrainingArguments
from hftl.errors import ConfigError
from hftl.families import split_for
from hftl.fast import ChannelsLastCollator, wants_channels_last
from hftl.feature_cache import CachedFeatureModel, cache_features, probe_head
from hftl.feature_cache import unwrap as unwrap_cached
from hftl.guards import active_guards
from hftl.layers import LayerMap, build_layer_map, check_head
from hftl.logs import ProgressLine
from hftl.optim import param_groups
from hftl.shapes import LabelSpec
from hftl.strategies.gradual import GradualUnfreezingCallback

logger = logging.getLogger(__name__)


class LengthGroupedOrder(torch.utils.data.Dataset):
    """The rows of ``dataset`` in transformers' length-grouped order (batches of similar length,
    mega-batches shuffled), with each epoch's order a function of (seed, epoch).

    transformers' ``LengthGroupedSampler`` draws the order from the global RNG when the epoch
    starts, so a run resumed in the middle of a later epoch trains on another order than the
    uninterrupted run did. The epoch comes from :class:`EpochCallback`, which every process runs.
    """

    def __init__(self, dataset, lengths: list[int], batch_size: int, seed: int):
        if len(lengths) != len(dataset):
            raise ValueError(f"{len(lengths)} lengths for {len(dataset)} rows")
        self.dataset, self.lengths, self.batch_size, self.seed = dataset, lengths, batch_size, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        generator = torch.Generator().manual_seed(self.seed + epoch)
        self.order = get_length_grouped_indices(self.lengths, self.batch_size, generator=generator)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        if isinstance(index, str):  # a column, in this epoch's order
            column = self.dataset[index]
            return [column[i] for i in self.order]
        return self.dataset[self.order[index]]


class EpochCallback(TrainerCallback):
    """Sets the epoch of a dataset that reads differently each epoch (a
    :class:`LengthGroupedOrder`, cached augmented views) from the trainer state when an epoch
    begins (before its data loader is iterated), also after a resume."""

    def __init__(self, ordered):
        self.ordered = ordered

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch: epochs done (fractional on a resume)
        self.ordered.set_epoch(math.floor((state.epoch or 0.0) + 1e-6))


class TransferTrainer(Trainer):
    """A Trainer that applies ``args.strategy``, builds layer-wise LR groups and adds the active
    guards' penalties to the loss.

    Args:
        model: a model :func:`hftl.layer_ids` understands (any ``AutoModelFor...``, timm), or its
            head on cached features (:func:`hftl.feature_cache.cache_features`).
        args: :class:`~hftl.TransferTrainingArguments`.
        layer_map: optional precomputed :class:`~hftl.layers.LayerMap` (e.g. with overrides).
        reference: the :class:`~hftl.reference.Reference` task (forgetting is measured on it;
            guards such as ``ewc`` use it), or None.
        *args, **kwargs: everything else ``transformers.Trainer`` takes.

    Example:
        >>> args = TransferTrainingArguments("out", strategy="partial", num_trainable_layers=2,
        ...                                  layer_decay=0.8, head_lr_multiplier=10)
        >>> TransferTrainer(model, args, train_dataset=train, eval_dataset=val).train()
    """

    def __init__(self, model=None, args=None, *pargs, layer_map: LayerMap | None = None,
                 reference=None, label_spec: LabelSpec | None = None, **kwargs):  # fmt: skip
        if model is None:
            raise ValueError("TransferTrainer needs a model (model_init is not supported)")
        if args is None:
            args = TransferTrainingArguments(output_dir="trainer_output")
        if not isinstance(args, TransferTrainingArguments):
            raise TypeError(
                f"TransferTrainer needs hftl.TransferTrainingArguments, got {type(args).__name__}: "
                "build the arguments with TransferTrainingArguments(...) instead"
            )
        self.strategy = args.strategy_object
        # the labels: the loss is theirs (default: what the model's config says)
        self.label_spec = label_spec or LabelSpec.from_config(
            getattr(unwrap_cached(model), "config", None)
        )
        self.label_spec.check_training(args)
        self.feature_cache = self.cached_features = None  # set by build()
        self.reference = reference  # hftl.reference.Reference: the task forgetting is measured on
        if reference is not None:
            reference.check_backbone(unwrap_cached(model))
        if (
            self.strategy.frozen_backbone
            and args.feature_cache
            and not isinstance(model, CachedFeatureModel)
            and split_for(model) is not None
        ):
            logger.info(
                "feature cache: the frozen backbone runs every step; TransferTrainer.build(...) "
                "computes its features once instead"
            )
        model = self.strategy.wrap(model, args)
        if reference is not None and hasattr(model, "peft_config"):
            raise ConfigError(
                f"--reference_* with strategy {args.strategy}: measuring forgetting through "
                "adapters is not supported yet; leave the reference task out"
            )
        self.layer_map = layer_map or build_layer_map(model, grouping=args.layer_grouping)
        check_head(self.layer_map, model)
        self.strategy.freeze(model, args, self.layer_map)
        self.guards = active_guards(args)
        for guard in self.guards:
            if guard.needs_reference and reference is None:
                raise ConfigError(
                    f"guards [{guard.name}] needs the reference task, the one the model knew "
                    "before: give --reference_train_file / --reference_train_dir / "
                    "--reference_dataset_name"
                )
        self._guard_values: dict = {}  # guard name -> (sum of its penalties, count) since a log
        for guard in self.guards:
            guard.setup(model, args, reference=reference)
        self.channels_last = wants_channels_last(model, args.channels_last)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
            kwargs["data_collator"] = ChannelsLastCollator(
                kwargs.get("data_collator") or default_data_collator
            )
        args, kwargs = self._length_grouping(args, kwargs)
        # The strategy's callbacks first, so that the user's see this step's trainable set; before
        # them, the resumed / best weights are put in place (CheckpointCallback).
        self.strategy_callbacks = self.strategy.callbacks(args, self.layer_map)
        self.checkpoints = CheckpointCallback()
        kwargs["callbacks"] = [
            self.checkpoints,
            *self.epoch_callbacks,
            *self.strategy_callbacks,
            *(kwargs.get("callbacks") or []),
            *(c for guard in self.guards for c in guard.callbacks(args)),
        ]
        super().__init__(model, args, *pargs, **kwargs)
        # Every hftl model's loss is the mean over its micro-batch: it takes **kwargs but drops
        # num_items_in_batch, so Trainer, which asks the forward signature, would neither divide
        # the loss by gradient_accumulation_steps nor normalise it over the accumulated batch
        # (the steps would train at gradient_accumulation_steps x the learning rate;
        # huggingface/transformers#47688). Trainer divides it where this is False.
        if self.compute_loss_func is None:
            self.model_accepts_loss_kwargs = False
        if any(type(c) is ProgressCallback for c in self.callback_handler.callbacks):
            self.remove_callback(ProgressCallback)  # a bar with the loss on it, not a dict a step
            self.add_callback(ProgressLine())
        # FSDP and DeepSpeed checkpoints are sharded their own way; Trainer reads those.
        self.checkpoints.exact_loading = not (self.is_fsdp_enabled or self.is_deepspeed_enabled)

    @classmethod
    def build(cls, model, args, *, train_dataset=None, eval_dataset=None, data_collator=None,
              processing_class=None, callbacks=None, reference=None,
              label_spec: LabelSpec | None = None, **kwargs) -> TransferTrainer:  # fmt: skip
        """A TransferTrainer after the steps ``args`` ask for before training: with
        ``strategy: feature_extraction`` and ``feature_cache``, the frozen backbone's features
        of the training and evaluation data, computed once (or reused), and the head trained on
        them (:func:`hftl.feature_cache.cache_features`; ``linear_probe`` adds its callback).

        With ``strategy: lp_ft``, the new head is first fitted by a linear probe on the starting
        backbone's features of the training set (:func:`hftl.feature_cache.probe_head`).

        ``trainer.feature_cache``: what the cache did (examples, seconds, reused, linear_probe),
        ``{"used": False}`` where the model has no known split, None for other strategies.
        """
        cached, record = None, None
        label_spec = label_spec or LabelSpec.from_config(getattr(model, "config", None))
        if args.strategy_object.probes_head:
            record = probe_head(
                model, args, train_dataset, data_collator=data_collator,
                processing_class=processing_class, label_spec=label_spec,
            )  # fmt: skip
        elif args.strategy_object.frozen_backbone:
            record = {"used": False}
            if args.feature_cache:
                cached = cache_features(
                    model, args, train_dataset, eval_dataset, data_collator=data_collator,
                    processing_class=processing_class, label_spec=label_spec,
                )  # fmt: skip
        if cached is not None:
            model, train_dataset, eval_dataset = cached.model, cached.train, cached.eval
            data_collator, record = cached.collator, cached.info
            callbacks = [*cached.callbacks, *(callbacks or [])]
            if len(cached.train.views) > 1:  # augmented views: epoch e reads view e mod views
                callbacks.insert(0, EpochCallback(cached.train))
        trainer = cls(
            model, args, train_dataset=train_dataset, eval_dataset=eval_dataset,
            data_collator=data_collator, processing_class=processing_class, callbacks=callbacks,
            reference=reference, label_spec=label_spec, **kwargs,
        )  # fmt: skip
        trainer.feature_cache = record
        trainer.cached_features = cached
        return trainer

    @property
    def unfreezing(self) -> GradualUnfreezingCallback | None:
        """The gradual-unfreezing schedule (its ``history``), where the strategy has one."""
        return next((c for c in self.strategy_callbacks if hasattr(c, "history")), None)

    def _length_grouping(self, args, kwargs):
        """``group_by_length``: the training set as a :class:`LengthGroupedOrder`, read in order.

        The Trainer gets a copy of ``args`` with ``train_sampling_strategy: sequential`` (the
        caller's arguments, which the run's config is written from, are left as they are).
        """
        self.epoch_callbacks: list[TrainerCallback] = []
        train = kwargs.get("train_dataset")
        if args.train_sampling_strategy != "group_by_length" or train is None:
            return args, kwargs
        lengths = self._lengths(args, train, kwargs.get("processing_class"))
        token = args.hub_token
        args = copy.copy(args)
        args.hub_token = token
        if lengths is None:  # e.g. cached features: all one length, nothing to group
            args.train_sampling_strategy = "random"
            return args, kwargs
        if args.dataloader_num_workers > 0 and args.dataloader_persistent_workers:
            raise ConfigError(
                "train_sampling_strategy=group_by_length with dataloader_persistent_workers: the "
                "workers would keep the first epoch's order; turn one of them off"
            )
        args.train_sampling_strategy = "sequential"
        ordered = LengthGroupedOrder(
            train,
            lengths,
            batch_size=args.train_batch_size * args.gradient_accumulation_steps,
            seed=args.data_seed or args.seed,
        )
        kwargs["train_dataset"] = ordered
        self.epoch_callbacks = [EpochCallback(ordered)]
        return args, kwargs

    @staticmethod
    def _lengths(args, dataset, processing_class) -> list[int] | None:
        names = getattr(dataset, "column_names", None)
        if names is None:
            return None
        if args.length_column_name in names:
            return list(dataset[args.length_column_name])
        input_names = getattr(processing_class, "model_input_names", None) or ["input_ids"]
        if input_names[0] not in names:
            return None
        return [len(row) for row in dataset[input_names[0]]]

    def save_model(self, output_dir=None, _internal_call=False):
        """``Trainer.save_model``; a head trained on cached features is saved as the full model."""
        wrapper = self.model
        self.model = unwrap_cached(wrapper)
        try:
            super().save_model(output_dir, _internal_call=_internal_call)
        finally:
            self.model = wrapper

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The task loss, the run's label shape's (cross-entropy with its class weights and
        label smoothing, BCE per label, MSE / Huber on standardised targets; a ``compute_loss_func``
        given to the Trainer instead, as Trainer computes it), plus, while training, the penalty
        of every active guard."""
        if self.compute_loss_func is not None or "labels" not in inputs:
            loss, outputs = super().compute_loss(
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
        else:
            outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
            loss = self.label_spec.loss(
                outputs["logits"], inputs["labels"], self.args.label_smoothing_factor
            )
            outputs["loss"] = loss
        if model.training:
            share = self._penalty_share(num_items_in_batch)
            for guard in self.guards:
                penalty = guard.penalty(model, inputs, outputs)
                if penalty is not None:
                    loss = loss + share * penalty
                    total, count = self._guard_values.get(guard.name, (0.0, 0))
                    self._guard_values[guard.name] = (total + penalty.detach(), count + 1)
        return (loss, outputs) if return_outputs else loss

    def _penalty_share(self, num_items_in_batch) -> float:
        """The factor that makes a guard's penalty count once per optimizer step: where Trainer
        divides the step's loss by the gradient accumulation steps itself, 1; where the task loss
        comes normalised over the whole accumulated batch (``num_items_in_batch``) and Trainer
        does not divide, 1 / accumulation steps (the same test as ``Trainer.training_step``)."""
        scaled = getattr(self, "loss_is_scaled_for_ga", None)
        if scaled is None:
            scaled = (
                self.model_accepts_loss_kwargs and num_items_in_batch is not None
            ) or self.compute_loss_func is not None
        steps = getattr(self, "current_gradient_accumulation_steps", None)
        steps = steps or self.args.gradient_accumulation_steps
        return 1.0 / steps if scaled else 1.0

    def log(self, logs: dict, *pargs, **kwargs) -> None:
        """``Trainer.log``; a training log also gets each guard's mean penalty since the last
        one (``guard_l2sp``, ...), so the logs and ``trainer_state.json`` show what it added."""
        if "loss" in logs:
            for name, (total, count) in self._guard_values.items():
                logs[f"guard_{name}"] = round(float(total) / count, 6)
            self._guard_values.clear()
        super().log(logs, *pargs, **kwargs)

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
        trainer_logger = logging.getLogger("transformers.trainer")
        trainer_logger.addFilter(self.checkpoints.filter)
        try:
            resume = None if checkpoint is None else str(checkpoint)
            output = super().train(resume, *pargs, **kwargs)
        finally:
            trainer_logger.removeFilter(self.checkpoints.filter)
            self.checkpoints.pending = None
        for guard in self.guards:
            guard.after_training(self)
        return output

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
        layer_map = (
            self.layer_map
            if opt_model is self.model
            else build_layer_map(opt_model, grouping=self.args.layer_grouping)
        )
        groups = param_groups(
            opt_model,
            lr=self.args.learning_rate,
            layer_decay=self.args.layer_decay,
            head_lr_multiplier=self.args.head_lr_multiplier,
            weight_decay=self.args.weight_decay,
            include_frozen=self.strategy.optimizer_holds_frozen,
            layer_map=layer_map,
            log=self.is_world_process_zero(),
        )
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer
