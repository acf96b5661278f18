"""DeiT (the transformers classifier without distillation token head): the classifier reads the
[CLS] token."""

from hftl.families.base import Family, Split


class DeiT(Family):
    name = "deit"
    model_types = ("deit",)
    split = Split(
        "deit",
        lambda m, b: m.deit(pixel_values=b["pixel_values"]).last_hidden_state[:, 0],
        lambda m, f: m.classifier(f),
        linear_head=lambda m: m.classifier,
    )
    lora_targets = ("query", "value")
