"""BERT: the head is the pooler (dense + tanh on token 0), dropout and the classifier."""

from hftl.families.base import Family, Split, first_token


class Bert(Family):
    name = "bert"
    model_types = ("bert",)
    split = Split(
        "bert",
        first_token,
        lambda m, f: m.classifier(m.dropout(m.base_model.pooler(f[:, None]))),
    )
    lora_targets = ("query", "value")
