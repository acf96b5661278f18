"""The layer map: every parameter has a depth, depths follow the forward pass, the head is on top."""

import pytest
import torch
from conftest import build, depths_in_forward_order
from torch import nn

from hftl import LayerMapError, build_layer_map, layer_ids
from hftl.testing import dummy_inputs

# (model kind, expected L, one embedding/stem parameter, one head parameter)
EXPECTED = {
    "bert": (2, "bert.embeddings.word_embeddings.weight", "classifier.weight"),
    "bert-mean": (2, "bert.embeddings.word_embeddings.weight", "classifier.weight"),
    "roberta": (2, "roberta.embeddings.word_embeddings.weight", "classifier.out_proj.weight"),
    "distilbert": (2, "distilbert.embeddings.word_embeddings.weight", "pre_classifier.weight"),
    "vit": (2, "vit.embeddings.cls_token", "classifier.weight"),
    "deit": (2, "deit.embeddings.cls_token", "classifier.weight"),
    "swin": (2, "swin.embeddings.patch_embeddings.projection.weight", "classifier.weight"),
    "resnet": (2, "resnet.embedder.embedder.convolution.weight", "classifier.1.weight"),
    "timm-resnet": (4, "timm_model.conv1.weight", "timm_model.fc.weight"),
    "timm-vit": (2, "timm_model.pos_embed", "timm_model.head.weight"),
    "wav2vec2": (2, "wav2vec2.feature_extractor.conv_layers.0.conv.weight", "classifier.weight"),
    "whisper": (2, "encoder.conv1.weight", "classifier.weight"),
    "ast": (2, "audio_spectrogram_transformer.embeddings.cls_token", "classifier.dense.weight"),
}


def test_every_parameter_has_a_depth_in_range(model_kind):
    model = build(model_kind)
    layer_map = build_layer_map(model)
    num_blocks, embedding_name, head_name = EXPECTED[model_kind]

    assert list(layer_map.depths) == [name for name, _ in model.named_parameters()]
    assert layer_map.num_blocks == num_blocks
    assert set(layer_map.depths.values()) == set(range(num_blocks + 2))
    assert layer_map.depths[embedding_name] == 0
    assert layer_map.depths[head_name] == num_blocks + 1
    assert layer_ids(model) == layer_map.depths


def test_depths_never_decrease_along_the_forward_pass(model_kind):
    """Hook every module that owns parameters; the order they run in must have rising depths."""
    seen = depths_in_forward_order(build(model_kind), dummy_inputs(model_kind))
    assert len(set(seen)) == EXPECTED[model_kind][0] + 2, "every depth runs"
    assert seen == sorted(seen), f"depth order along the forward pass: {seen}"


def test_depth_grows_with_block_index():
    model = build("bert", layers=5)
    depths = layer_ids(model)
    for index in range(5):
        assert depths[f"bert.encoder.layer.{index}.attention.self.query.weight"] == index + 1
    assert depths["bert.pooler.dense.weight"] == 6  # pooler-to-classifier belongs to the head


def test_final_norm_sits_with_the_last_block():
    vit = build("vit", layers=3)
    assert layer_ids(vit)["vit.layernorm.weight"] == 3
    timm_vit = build("timm-vit", layers=3)
    assert layer_ids(timm_vit)["timm_model.norm.weight"] == 3


def test_cnn_blocks_are_stages():
    """A CNN gets one depth per stage (the unit people unfreeze), with downsampling inside it."""
    depths = layer_ids(build("resnet"))
    assert depths["resnet.encoder.stages.1.layers.0.shortcut.convolution.weight"] == 2
    assert depths["resnet.encoder.stages.1.layers.1.layer.0.convolution.weight"] == 2
    timm_depths = layer_ids(build("timm-resnet"))
    assert timm_depths["timm_model.layer3.0.downsample.0.weight"] == 3
    assert timm_depths["timm_model.layer3.1.conv2.weight"] == 3


def test_peft_wrapped_model_keeps_its_names_and_depths():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        build("bert"),
        LoraConfig(r=2, target_modules=["query", "value"], modules_to_save=["classifier"]),
    )
    depths = layer_ids(model)
    assert list(depths) == [name for name, _ in model.named_parameters()]
    lora = [n for n in depths if "lora_A" in n]
    assert lora, "LoRA parameters are in the map"
    for name in lora:
        block = int(name.split("encoder.layer.")[1].split(".")[0])
        assert depths[name] == block + 1
    saved_head = [n for n in depths if "modules_to_save" in n]
    assert saved_head and all(depths[n] == 3 for n in saved_head)


def test_unplaceable_model_names_its_parameters_and_overrides_place_them():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(LayerMapError, match=r"0\.weight.*overrides"):
        layer_ids(model)
    with pytest.raises(LayerMapError, match=r"2\.bias"):
        layer_ids(model, overrides={r"^0\.": 1})
    depths = layer_ids(model, overrides={r"^0\.": 1, r"^2\.": "head"})
    assert depths == {"0.weight": 1, "0.bias": 1, "2.weight": 2, "2.bias": 2}


def test_overrides_move_parameters_on_a_real_model():
    model = build("vit")
    depths = layer_ids(model, overrides={r"vit\.layernorm\.": "head"})
    assert depths["vit.layernorm.weight"] == 3
    assert depths["vit.layers.1.mlp.fc2.weight"] == 2


@pytest.mark.parametrize("architecture", ["resnet18", "efficientnet_b0"])
def test_fine_grouping_gives_timms_own_layer_decay_tensor_for_tensor(architecture):
    """--layer_grouping fine: the LR of every tensor is what timm's param_groups_layer_decay
    (train.py --layer-decay) gives it; coarse: one depth per stage, timm's coarse groups."""
    import timm
    from timm.models._manipulate import group_parameters
    from timm.optim import param_groups_layer_decay

    from hftl.optim import param_groups

    torch.manual_seed(0)
    model = timm.create_model(architecture, pretrained=False, num_classes=3)
    fine, coarse = (build_layer_map(model, grouping=g) for g in ("fine", "coarse"))
    assert fine.grouping == "fine" and coarse.num_blocks < fine.num_blocks
    timm_coarse = group_parameters(model, model.group_matcher(coarse=True), reverse=True)
    assert coarse.depths == {name: timm_coarse[name] for name in coarse.depths}

    ours = {
        id(p): group["lr"]
        for group in param_groups(model, lr=1.0, layer_decay=0.5, layer_map=fine, log=False)
        for p in group["params"]
    }
    theirs = {
        id(p): group["lr_scale"]
        for group in param_groups_layer_decay(model, layer_decay=0.5)
        for p in group["params"]
    }
    assert len(set(theirs.values())) == fine.num_blocks + 2  # stem, each block, head
    assert ours == pytest.approx(theirs)
