"""Tiny random models built from configs, offline: for tests, examples and smoke runs.

Every builder returns a real ``AutoModelFor...``-style classification model with random weights,
small enough to train on a CPU in seconds. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

TEXT_VOCAB = 64


def tiny_bert(num_labels: int = 2, layers: int = 2) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=TEXT_VOCAB,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


def tiny_roberta(num_labels: int = 2, layers: int = 2) -> nn.Module:
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(
        vocab_size=TEXT_VOCAB,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=70,
        num_labels=num_labels,
    )
    return RobertaForSequenceClassification(config)


def tiny_distilbert(num_labels: int = 2, layers: int = 2) -> nn.Module:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(
        vocab_size=TEXT_VOCAB,
        dim=32,
        n_layers=layers,
        n_heads=2,
        hidden_dim=37,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    return DistilBertForSequenceClassification(config)


def tiny_vit(num_labels: int = 3, layers: int = 2) -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        num_labels=num_labels,
    )
    return ViTForImageClassification(config)


def tiny_resnet(num_labels: int = 3, layers: int = 2) -> nn.Module:
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16, 16, 32][:layers],
        depths=[1, 2, 1, 1][:layers],
        layer_type="bottleneck",
        num_labels=num_labels,
    )
    return ResNetForImageClassification(config)


def tiny_timm_resnet(num_labels: int = 3) -> nn.Module:
    """timm ``resnet18`` (4 stages, BatchNorm) inside transformers' TimmWrapper."""
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    config = TimmWrapperConfig(architecture="resnet18", num_labels=num_labels)
    return TimmWrapperForImageClassification(config)


def tiny_timm_vit(num_labels: int = 3, layers: int = 2) -> nn.Module:
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    config = TimmWrapperConfig(
        architecture="vit_tiny_patch16_224",
        num_labels=num_labels,
        model_args={
            "img_size": 32,
            "patch_size": 8,
            "depth": layers,
            "embed_dim": 32,
            "num_heads": 2,
        },
    )
    return TimmWrapperForImageClassification(config)


TINY_MODELS: dict[str, Callable[..., nn.Module]] = {
    "bert": tiny_bert,
    "roberta": tiny_roberta,
    "distilbert": tiny_distilbert,
    "vit": tiny_vit,
    "resnet": tiny_resnet,
    "timm-resnet": tiny_timm_resnet,
    "timm-vit": tiny_timm_vit,
}

TEXT_MODELS = ("bert", "roberta", "distilbert")


def dummy_inputs(kind: str, batch_size: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch the tiny model called ``kind`` accepts (token ids or 32x32 images)."""
    generator = torch.Generator().manual_seed(seed)
    if kind in TEXT_MODELS:
        ids = torch.randint(3, TEXT_VOCAB, (batch_size, 12), generator=generator)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    return {"pixel_values": torch.randn(batch_size, 3, 32, 32, generator=generator)}


def keyword_dataset(num_examples: int, *, keyword: int = 7, seed: int = 0, length: int = 12):
    """Token-id sequences labelled 1 when they contain ``keyword`` (about half of them)."""
    from datasets import Dataset

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(8, TEXT_VOCAB, (num_examples, length), generator=generator)
    labels = torch.randint(0, 2, (num_examples,), generator=generator)
    positions = torch.randint(1, length, (num_examples,), generator=generator)
    ids[labels == 1, positions[labels == 1]] = keyword
    return Dataset.from_dict(
        {
            "input_ids": ids.tolist(),
            "attention_mask": torch.ones_like(ids).tolist(),
            "labels": labels.tolist(),
        }
    ).with_format("torch")


def colour_dataset(num_examples: int, *, num_labels: int = 3, seed: int = 0, size: int = 32):
    """Noisy 32x32 images whose class is the colour channel that is brightest."""
    from datasets import Dataset

    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_labels, (num_examples,), generator=generator)
    images = torch.randn(num_examples, 3, size, size, generator=generator) * 0.5
    images[torch.arange(num_examples), labels % 3] += 1.0
    return Dataset.from_dict(
        {"pixel_values": images.numpy(), "labels": labels.tolist()}
    ).with_format("torch")


def quiet_training_args(output_dir: str, **overrides):
    """``TransferTrainingArguments`` for short offline runs: CPU, no checkpoints, no reporting,
    no progress bars, seed 0. ``overrides`` set anything else (strategy, learning_rate, ...)."""
    from hftl.config import TransferTrainingArguments

    defaults = dict(
        output_dir=str(output_dir),
        save_strategy="no",
        report_to="none",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
    )
    return TransferTrainingArguments(**{**defaults, **overrides})
