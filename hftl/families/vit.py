"""ViT: the classifier reads the [CLS] token of the last hidden state."""

from hftl.families.base import Family, Split, class_token


class ViT(Family):
    name = "vit"
    model_types = ("vit",)
    split = Split(
        "vit",
        class_token,
        lambda m, f: m.classifier(f),
        linear_head=lambda m: m.classifier,
    )
    lora_targets = ("query", "value")
