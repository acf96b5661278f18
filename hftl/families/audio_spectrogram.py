"""Audio Spectrogram Transformer: the head (layer norm + linear) reads the mean of its two class
tokens."""

from hftl.families.base import Family, Split


class AST(Family):
    name = "ast"
    model_types = ("audio-spectrogram-transformer",)
    split = Split(
        "ast",
        lambda m, b: m.base_model(input_values=b["input_values"]).pooler_output,
        lambda m, f: m.classifier(f),
    )
    lora_targets = ("query", "value")
