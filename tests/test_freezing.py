"""Strategies freeze for real: after optimizer steps exactly the intended tensors moved."""

import pytest
import torch
from conftest import build, loss_of

from hftl import apply_strategy, build_layer_map, min_trainable_depth, param_groups
from hftl.freezing import set_trainable
from hftl.strategies.gradual import gradual_stage


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before, model):
    after = model.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.parametrize(
    "strategy,trainable_blocks", [("feature_extraction", 0), ("partial", 1), ("full", None)]
)
def test_only_intended_parameters_change_after_optimizer_steps(
    model_kind, strategy, trainable_blocks
):
    model = build(model_kind)
    layer_map = build_layer_map(model)
    min_depth = apply_strategy(model, layer_map, strategy, num_trainable_layers=trainable_blocks)
    # Weight decay is on: frozen weights must not drift either.
    optimizer = torch.optim.AdamW(param_groups(model, lr=1e-2, weight_decay=0.1, log=False))
    before = _snapshot(model)
    model.train()
    for step in range(2):
        optimizer.zero_grad()
        loss_of(model, model_kind, seed=step).backward()
        optimizer.step()

    params = dict(model.named_parameters())
    changed = _changed(before, model) & params.keys()
    expected = {
        n for n, d in layer_map.depths.items() if d >= min_depth and n not in layer_map.kept_frozen
    }  # kept frozen: fixed tensors such as Whisper's sinusoidal positions
    assert changed == expected
    assert all(params[n].grad is None for n in params if n not in expected), "frozen: no gradient"


def test_frozen_batchnorm_keeps_its_running_statistics():
    """Trainer calls model.train(); frozen BatchNorm layers must not update running mean/var."""
    for kind in ("timm-resnet", "resnet"):
        model = build(kind)
        layer_map = build_layer_map(model)
        top = layer_map.num_blocks
        apply_strategy(model, layer_map, "partial", num_trainable_layers=1)
        before = _snapshot(model)
        model.train()
        with torch.no_grad():
            loss_of(model, kind)
        buffers = {n for n, _ in model.named_buffers() if "running_mean" in n}
        moved = _changed(before, model) & buffers
        depth_of_buffer = {
            n: layer_map.depths[n.replace("running_mean", "weight")] for n in buffers
        }
        assert moved == {n for n, d in depth_of_buffer.items() if d == top}, kind
        assert moved, "the trainable block's BatchNorm still learns its statistics"


def test_unfrozen_batchnorm_follows_train_mode_again():
    model = build("timm-resnet")
    layer_map = build_layer_map(model)
    set_trainable(model, layer_map, layer_map.head_depth)
    model.train()
    with torch.no_grad():
        loss_of(model, "timm-resnet")
    assert not model.timm_model.bn1.training
    set_trainable(model, layer_map, 0)
    model.train()
    before = model.timm_model.bn1.running_mean.clone()
    with torch.no_grad():
        loss_of(model, "timm-resnet")
    assert model.timm_model.bn1.training
    assert not torch.equal(before, model.timm_model.bn1.running_mean)


def test_min_trainable_depth_per_strategy():
    assert min_trainable_depth("feature_extraction", 12) == 13
    assert min_trainable_depth("partial", 12, num_trainable_layers=3) == 10
    assert min_trainable_depth("partial", 12, num_trainable_layers=0) == 13
    assert min_trainable_depth("full", 12) == 0
    assert [min_trainable_depth("gradual", 3, stage=s) for s in range(7)] == [4, 3, 2, 1, 0, 0, 0]
    with pytest.raises(ValueError, match="num_trainable_layers=13 but the model has 12 blocks"):
        min_trainable_depth("partial", 12, num_trainable_layers=13)
    with pytest.raises(ValueError, match="needs num_trainable_layers"):
        min_trainable_depth("partial", 12)
    with pytest.raises(ValueError, match="unknown strategy"):
        min_trainable_depth("lorax", 12)


def test_gradual_stage_counts_whole_intervals():
    assert [gradual_stage(p, 2) for p in range(6)] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="unfreeze_every"):
        gradual_stage(3, 0)
