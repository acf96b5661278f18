"""DeiT (the transformers classifier without distillation token head): the classifier reads the
[CLS] token."""

from hftl.families.base import Family, Split, class_token


class DeiT(Family):
    name = "deit"
    model_types = ("deit",)
    split = Split(
        "deit",
        class_token,
        lambda m, f: m.classifier(f),
        linear_head=lambda m: m.classifier,
    )
    lora_targets = ("query", "value")
