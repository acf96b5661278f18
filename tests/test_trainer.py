"""TransferTrainer: strategies applied through a real Trainer run, gradual unfreezing on schedule."""

import pytest
import torch
from conftest import build
from transformers import TrainerCallback, TrainerState, TrainingArguments

from hftl import (
    GradualUnfreezingCallback,
    TransferTrainer,
    build_layer_map,
)
from hftl.testing import colour_dataset, keyword_dataset, quiet_training_args


def _args(output_dir, **overrides):
    defaults = dict(
        learning_rate=1e-3, per_device_train_batch_size=8, num_train_epochs=1, weight_decay=0.1
    )
    return quiet_training_args(output_dir, **{**defaults, **overrides})


class RecordTrainableDepths(TrainerCallback):
    """After hftl's callback has run at each step: which depths have requires_grad=True."""

    def __init__(self, layer_map):
        self.layer_map, self.per_step = layer_map, []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.per_step.append(
            min(self.layer_map.depths[n] for n, p in model.named_parameters() if p.requires_grad)
        )


def test_trainer_builds_llrd_groups_from_its_arguments(tmp_path):
    model = build("bert", layers=3)
    args = _args(tmp_path, strategy="full", layer_decay=0.5, head_lr_multiplier=10.0, max_steps=1)
    trainer = TransferTrainer(model, args, train_dataset=keyword_dataset(16))
    optimizer = trainer.create_optimizer()
    lr_by_depth = {g["depth"]: g["lr"] for g in optimizer.param_groups}
    assert lr_by_depth == pytest.approx(
        {0: 1e-3 / 16, 1: 1e-3 / 8, 2: 1e-3 / 4, 3: 1e-3 / 2, 4: 1e-2}
    )
    decays = {g["weight_decay"] for g in optimizer.param_groups}
    assert decays == {0.0, 0.1}


@pytest.mark.parametrize("kind", ["timm-resnet", "vit"])
def test_feature_extraction_through_trainer_moves_only_the_head(tmp_path, kind):
    model = build(kind, num_labels=3)
    layer_map = build_layer_map(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = TransferTrainer(
        model,
        _args(tmp_path, strategy="feature_extraction", max_steps=3),
        train_dataset=colour_dataset(24),
    )
    trainer.train()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == set(layer_map.names_at(layer_map.head_depth))  # BatchNorm buffers included


def test_gradual_unfreezes_one_block_per_epoch_and_frozen_weights_do_not_drift(tmp_path):
    model = build("bert", layers=2)
    layer_map = build_layer_map(model)
    recorder = RecordTrainableDepths(layer_map)
    args = _args(
        tmp_path, strategy="gradual", unfreeze_every=1, unfreeze_unit="epoch", num_train_epochs=4
    )
    trainer = TransferTrainer(model, args, train_dataset=keyword_dataset(16), callbacks=[recorder])
    # Every parameter is in the optimizer from the start (unfrozen later, it must be updated).
    assert len([p for g in trainer.create_optimizer().param_groups for p in g["params"]]) == len(
        list(model.parameters())
    )
    start = {k: v.clone() for k, v in model.state_dict().items()}
    snapshots = []

    class Snapshot(TrainerCallback):
        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    trainer.add_callback(Snapshot())
    trainer.train()

    steps_per_epoch = 2
    assert (
        recorder.per_step
        == [3] * steps_per_epoch + [2] * steps_per_epoch + [1] * steps_per_epoch + [0] * 2
    )
    assert [depth for _, _, depth in trainer.unfreezing.history] == [3, 2, 1, 0]
    # After epoch 1 only the head moved: frozen weights sat in AdamW with weight decay 0.1.
    moved = {k for k in start if not torch.equal(start[k], snapshots[0][k])}
    assert moved == set(layer_map.names_at(3))
    # After epoch 2 the top block moved too, the rest not yet.
    moved = {k for k in start if not torch.equal(start[k], snapshots[1][k])}
    assert moved == set(layer_map.names_at(3)) | set(layer_map.names_at(2))
    # At the end everything trained.
    assert {k for k in start if not torch.equal(start[k], snapshots[-1][k])} == set(
        layer_map.depths
    )


def test_gradual_by_steps(tmp_path):
    model = build("vit", layers=2)
    layer_map = build_layer_map(model)
    recorder = RecordTrainableDepths(layer_map)
    args = _args(tmp_path, strategy="gradual", unfreeze_every=2, unfreeze_unit="step", max_steps=9)
    TransferTrainer(model, args, train_dataset=colour_dataset(80), callbacks=[recorder]).train()
    assert recorder.per_step == [3, 3, 2, 2, 1, 1, 0, 0, 0]


def test_gradual_stage_on_resume_comes_from_the_trainer_state():
    layer_map = build_layer_map(build("bert", layers=4))
    by_epoch = GradualUnfreezingCallback(layer_map, every=2, unit="epoch")
    assert by_epoch.stage(TrainerState(epoch=0.0)) == 0
    assert by_epoch.stage(TrainerState(epoch=2.0)) == 1
    assert by_epoch.stage(TrainerState(epoch=5.5)) == 2  # resumed mid-epoch 6
    by_step = GradualUnfreezingCallback(layer_map, every=3, unit="step")
    assert by_step.stage(TrainerState(global_step=7)) == 2


def test_gradual_sets_find_unused_parameters_and_refuses_false(tmp_path):
    trainer = TransferTrainer(
        build("bert"), _args(tmp_path, strategy="gradual"), train_dataset=keyword_dataset(8)
    )
    assert trainer.args.ddp_find_unused_parameters is True
    with pytest.raises(ValueError, match="ddp_find_unused_parameters"):
        _args(tmp_path, strategy="gradual", ddp_find_unused_parameters=False)


def test_partial_larger_than_the_model_fails_before_training(tmp_path):
    args = _args(tmp_path, strategy="partial", num_trainable_layers=5)
    with pytest.raises(
        ValueError, match="num_trainable_layers=5 but BertForSequenceClassification has 2 blocks"
    ):
        TransferTrainer(build("bert"), args, train_dataset=keyword_dataset(8))


def test_plain_training_arguments_are_refused(tmp_path):
    with pytest.raises(TypeError, match="TransferTrainingArguments"):
        TransferTrainer(build("bert"), TrainingArguments(str(tmp_path), use_cpu=True))


def test_learnable_toy_task_is_learned(tmp_path):
    """Not a timing: the full strategy with LLRD actually fits the keyword task."""
    model = build("bert", layers=2)
    args = _args(
        tmp_path,
        strategy="full",
        layer_decay=0.8,
        head_lr_multiplier=3.0,
        learning_rate=3e-3,
        num_train_epochs=15,
        per_device_train_batch_size=32,
        weight_decay=0.01,
    )
    trainer = TransferTrainer(model, args, train_dataset=keyword_dataset(1024, seed=0))
    trainer.train()
    test = keyword_dataset(256, seed=1)
    predictions = trainer.predict(test).predictions.argmax(-1)
    accuracy = (predictions == test.with_format("numpy")["labels"]).mean()
    assert accuracy > 0.9


def test_resumed_gradual_run_matches_the_uninterrupted_one(tmp_path):
    """Checkpoints hold the LLRD optimizer; a resumed run picks up the right unfreezing stage."""
    dataset = keyword_dataset(64)

    def run(output_dir, resume=None):
        model = build("bert", layers=2)
        args = _args(
            output_dir,
            strategy="gradual",
            unfreeze_every=2,
            unfreeze_unit="step",
            max_steps=6,
            save_strategy="steps",
            save_steps=3,
            layer_decay=0.7,
        )
        trainer = TransferTrainer(model, args, train_dataset=dataset)
        trainer.train(resume_from_checkpoint=resume)
        return model.state_dict(), trainer.unfreezing.history

    full_weights, full_history = run(tmp_path / "full")
    resumed_weights, resumed_history = run(
        tmp_path / "resumed", resume=str(tmp_path / "full" / "checkpoint-3")
    )
    assert [depth for _, _, depth in full_history] == [3, 2, 1]
    assert [(step, depth) for step, _, depth in resumed_history] == [(3, 2), (4, 1)]
    for name, tensor in full_weights.items():
        torch.testing.assert_close(resumed_weights[name], tensor, msg=name)


def test_default_lora_targets_skip_grouped_convolutions():
    import timm
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    from hftl.strategies.lora import default_lora_targets

    architecture = "tf_efficientnet_lite0"
    config = TimmWrapperConfig(
        architecture=architecture,
        pretrained_cfg=dict(timm.create_model(architecture, pretrained=False).pretrained_cfg),
        num_labels=3,
    )
    model = TimmWrapperForImageClassification(config)
    targets = default_lora_targets(model)
    modules = dict(model.named_modules())
    assert targets and all(modules[name].groups == 1 for name in targets)
    assert any(m.groups > 1 for m in modules.values() if isinstance(m, torch.nn.Conv2d))
