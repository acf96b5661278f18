"""Parameter groups: the LR each depth gets, which tensors decay, what is left out."""

import logging

import pytest
import torch
from conftest import build
from transformers import get_linear_schedule_with_warmup

from hftl import apply_strategy, build_layer_map, param_groups


@pytest.mark.parametrize("layer_decay,head_mult", [(1.0, 1.0), (0.7, 1.0), (0.5, 10.0)])
def test_each_group_gets_the_formula_lr(model_kind, layer_decay, head_mult):
    model = build(model_kind)
    layer_map = build_layer_map(model)
    num_blocks, lr = layer_map.num_blocks, 2e-4
    groups = param_groups(
        model, lr=lr, layer_decay=layer_decay, head_lr_multiplier=head_mult, weight_decay=0.1
    )

    for group in groups:
        depth = group["depth"]
        expected = (
            lr * head_mult
            if depth == num_blocks + 1
            else lr * layer_decay ** (num_blocks + 1 - depth)
        )
        assert group["lr"] == pytest.approx(expected)
        assert {layer_map.depths[n] for n in group["param_names"]} == {depth}
    lrs = [g["lr"] for g in groups if g["depth"] <= num_blocks]
    if layer_decay < 1:
        assert lrs == sorted(lrs) and lrs[0] < lrs[-1], "early layers learn slower"
    # Every trainable parameter sits in exactly one group, by identity (the model's own frozen
    # tensors, such as Whisper's sinusoidal positions, in none).
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)


def test_no_weight_decay_for_biases_norms_tokens_and_position_embeddings():
    for kind, no_decay_names, decay_names in [
        (
            "bert",
            [
                "bert.encoder.layer.0.attention.self.query.bias",
                "bert.embeddings.LayerNorm.weight",
                "bert.embeddings.position_embeddings.weight",
            ],
            [
                "bert.encoder.layer.0.attention.self.query.weight",
                "bert.embeddings.word_embeddings.weight",
                "classifier.weight",
            ],
        ),
        (
            "vit",
            ["vit.embeddings.cls_token", "vit.embeddings.position_embeddings"],
            ["vit.layers.0.mlp.fc1.weight"],
        ),
        (
            "timm-vit",
            ["timm_model.cls_token", "timm_model.pos_embed", "timm_model.norm.weight"],
            ["timm_model.blocks.0.attn.qkv.weight"],
        ),
        (
            "timm-resnet",
            ["timm_model.bn1.weight", "timm_model.fc.bias"],
            ["timm_model.conv1.weight"],
        ),
    ]:
        groups = param_groups(build(kind), lr=1e-3, weight_decay=0.05)
        decay_of = {n: g["weight_decay"] for g in groups for n in g["param_names"]}
        for name in no_decay_names:
            assert decay_of[name] == 0.0, name
        for name in decay_names:
            assert decay_of[name] == 0.05, name


def test_frozen_parameters_are_left_out_unless_asked_for():
    model = build("bert")
    layer_map = build_layer_map(model)
    apply_strategy(model, layer_map, "partial", num_trainable_layers=1)
    names = [n for g in param_groups(model, lr=1e-3) for n in g["param_names"]]
    assert names == [n for n, p in model.named_parameters() if p.requires_grad]
    assert {layer_map.depths[n] for n in names} == {2, 3}
    everything = [
        n for g in param_groups(model, lr=1e-3, include_frozen=True) for n in g["param_names"]
    ]
    assert sorted(everything) == sorted(n for n, _ in model.named_parameters())


def test_schedulers_scale_every_group_from_its_own_lr():
    """The absolute LR written per group is what HF's LambdaLR schedules scale."""
    model = build("vit")
    groups = param_groups(model, lr=1e-3, layer_decay=0.5, head_lr_multiplier=4.0)
    initial = [g["lr"] for g in groups]
    optimizer = torch.optim.AdamW(groups)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=4)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([lr * 0.5 for lr in initial])
    assert optimizer.state_dict()["param_groups"][0]["param_names"] == groups[0]["param_names"]


def test_bad_factors_are_refused():
    model = build("bert")
    with pytest.raises(ValueError, match="layer_decay"):
        param_groups(model, lr=1e-3, layer_decay=1.5)
    with pytest.raises(ValueError, match="layer_decay"):
        param_groups(model, lr=1e-3, layer_decay=0.0)
    with pytest.raises(ValueError, match="head_lr_multiplier"):
        param_groups(model, lr=1e-3, head_lr_multiplier=0)


def test_group_table_is_logged(caplog):
    logger = logging.getLogger("hftl")
    with caplog.at_level(logging.INFO, logger="hftl"):
        propagate, logger.propagate = logger.propagate, True
        try:
            param_groups(build("bert"), lr=1e-3, layer_decay=0.5, weight_decay=0.01)
        finally:
            logger.propagate = propagate
    table = caplog.text
    assert "depth" in table and "lr" in table and "head" in table
    assert "0.00025" in table  # depth 1 of 2 blocks: 1e-3 * 0.5 ** 2
