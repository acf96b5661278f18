"""Swin: the classifier reads the pooled output (the mean of the last stage's tokens)."""

from hftl.families.base import Family, Split, pooled_image


class Swin(Family):
    name = "swin"
    model_types = ("swin",)
    split = Split(
        "swin",
        pooled_image,
        lambda m, f: m.classifier(f),
        linear_head=lambda m: m.classifier,
    )
    lora_targets = ("query", "value")
