"""ConvNeXt: the classifier reads the pooled, normalised last stage."""

from hftl.families.base import Family, Split


class ConvNext(Family):
    name = "convnext"
    model_types = ("convnext",)
    split = Split(
        "convnext",
        lambda m, b: m.convnext(pixel_values=b["pixel_values"]).pooler_output,
        lambda m, f: m.classifier(f),
        linear_head=lambda m: m.classifier,
    )
