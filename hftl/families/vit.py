"""ViT: the classifier reads the [CLS] token of the last hidden state."""

from hftl.families.base import Family, Split


class ViT(Family):
    name = "vit"
    model_types = ("vit",)
    split = Split(
        "vit",
        lambda m, b: m.vit(pixel_values=b["pixel_values"]).last_hidden_state[:, 0],
        lambda m, f: m.classifier(f),
        linear_head=lambda m: m.classifier,
    )
    lora_targets = ("query", "value")
