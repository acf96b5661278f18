"""The layer map beyond the seven core families: more AutoModelFor... and timm architectures.

Each model is built tiny from its config; the check is the forward-order one: the depths of the
modules, in the order they run, never decrease, and every depth 0..L+1 is used.
"""

import pytest
import torch
import transformers as T
from conftest import depths_in_forward_order

from hftl import build_layer_map

SMALL = dict(
    hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37, num_labels=3
)
TEXT = {
    "input_ids": torch.randint(5, 60, (2, 10)),
    "attention_mask": torch.ones(2, 10, dtype=torch.long),
}
IMAGE_32 = {"pixel_values": torch.randn(2, 3, 32, 32)}
IMAGE_64 = {"pixel_values": torch.randn(2, 3, 64, 64)}

HF_CASES = {
    "electra": (
        lambda: T.ElectraForSequenceClassification(
            T.ElectraConfig(vocab_size=64, embedding_size=16, **SMALL)
        ),
        TEXT,
        3,
    ),
    "albert": (
        lambda: T.AlbertForSequenceClassification(
            T.AlbertConfig(vocab_size=64, embedding_size=16, **SMALL)
        ),
        TEXT,
        1,
    ),
    "deberta-v2": (
        lambda: T.DebertaV2ForSequenceClassification(
            T.DebertaV2Config(
                vocab_size=64, relative_attention=True, norm_rel_ebd="layer_norm", **SMALL
            )
        ),
        TEXT,
        3,
    ),
    "mpnet": (
        lambda: T.MPNetForSequenceClassification(T.MPNetConfig(vocab_size=64, **SMALL)),
        TEXT,
        3,
    ),
    "xlm-roberta": (
        lambda: T.XLMRobertaForSequenceClassification(
            T.XLMRobertaConfig(vocab_size=64, max_position_embeddings=40, **SMALL)
        ),
        TEXT,
        3,
    ),
    "deit": (
        lambda: T.DeiTForImageClassification(T.DeiTConfig(image_size=32, patch_size=8, **SMALL)),
        IMAGE_32,
        3,
    ),
    "dinov2": (
        lambda: T.Dinov2ForImageClassification(
            T.Dinov2Config(image_size=32, patch_size=8, **SMALL)
        ),
        IMAGE_32,
        3,
    ),
    "convnext": (
        lambda: T.ConvNextForImageClassification(
            T.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 2, 1], num_labels=3)
        ),
        IMAGE_32,
        4,
    ),
    "swin": (
        lambda: T.SwinForImageClassification(
            T.SwinConfig(
                image_size=32,
                patch_size=4,
                embed_dim=8,
                depths=[1, 2],
                num_heads=[1, 2],
                window_size=4,
                num_labels=3,
            )
        ),
        IMAGE_32,
        2,
    ),
    "mobilenet_v2": (
        lambda: T.MobileNetV2ForImageClassification(
            T.MobileNetV2Config(image_size=32, num_labels=3, depth_multiplier=0.25)
        ),
        IMAGE_32,
        16,
    ),
    "regnet": (
        lambda: T.RegNetForImageClassification(
            T.RegNetConfig(
                num_labels=3, hidden_sizes=[8, 16], depths=[1, 2], groups_width=8, embedding_size=8
            )
        ),
        IMAGE_32,
        2,
    ),
}
TIMM_CASES = {
    "convnext_atto": 4,
    "tf_efficientnet_lite0": 7,
    "mobilenetv3_small_100": 6,
    "regnety_002": 4,
    "densenet121": 4,
}


@pytest.mark.parametrize("name", sorted(HF_CASES))
def test_hf_architecture_depths_follow_the_forward_pass(name):
    torch.manual_seed(0)
    make, inputs, num_blocks = HF_CASES[name]
    model = make()
    assert build_layer_map(model).num_blocks == num_blocks
    seen = depths_in_forward_order(model, inputs)
    assert seen == sorted(seen)
    assert set(seen) == set(range(num_blocks + 2))


@pytest.mark.parametrize("architecture", sorted(TIMM_CASES))
def test_timm_architecture_depths_follow_the_forward_pass(architecture):
    torch.manual_seed(0)
    model = T.TimmWrapperForImageClassification(
        T.TimmWrapperConfig(architecture=architecture, num_labels=3)
    )
    num_blocks = TIMM_CASES[architecture]
    assert build_layer_map(model).num_blocks == num_blocks
    seen = depths_in_forward_order(model, IMAGE_64)
    assert seen == sorted(seen)
    assert set(seen) == set(range(num_blocks + 2))


def test_parameters_shared_by_all_blocks_train_only_with_everything():
    """MPNet's relative-position bias is registered after the layers but every layer uses it."""
    model = HF_CASES["mpnet"][0]()
    depths = build_layer_map(model).depths
    assert depths["mpnet.encoder.relative_attention_bias.weight"] == 0
    deberta = build_layer_map(HF_CASES["deberta-v2"][0]()).depths
    assert deberta["deberta.encoder.rel_embeddings.weight"] == 0
    assert deberta["deberta.encoder.LayerNorm.weight"] == 0
