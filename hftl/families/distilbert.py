"""DistilBERT: the head is a pre-classifier (dense + ReLU on token 0), dropout, the classifier."""

import torch.nn.functional as F

from hftl.families.base import Family, Split, first_token


class DistilBert(Family):
    name = "distilbert"
    model_types = ("distilbert",)
    split = Split(
        "distilbert",
        first_token,
        lambda m, f: m.classifier(m.dropout(F.relu(m.pre_classifier(f)))),
    )
    lora_targets = ("q_lin", "v_lin")
