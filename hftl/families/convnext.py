"""ConvNeXt: the classifier reads the pooled, normalised last stage."""

from hftl.families.base import Family, Split, pooled_image


class ConvNext(Family):
    name = "convnext"
    model_types = ("convnext",)
    split = Split(
        "convnext",
        pooled_image,
        lambda m, f: m.classifier(f),
        linear_head=lambda m: m.classifier,
    )
