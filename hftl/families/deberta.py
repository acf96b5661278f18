"""DeBERTa (v1 and v2/v3): a context pooler on token 0, dropout and the classifier. Their
relative-position embeddings (and v2's norm of them) are used by every block but registered after
them: depth 0."""

from hftl.families.base import Family, Split, first_token


class Deberta(Family):
    name = "deberta"
    model_types = ("deberta", "deberta-v2")
    split = Split(
        "deberta-v2", first_token, lambda m, f: m.classifier(m.dropout(m.pooler(f[:, None])))
    )
    shared_across_blocks = (r"(^|\.)encoder\.rel_embeddings\.", r"(^|\.)encoder\.LayerNorm\.")
    lora_targets = ("in_proj",)  # v1's fused projection; v2 names them *_proj: every Linear
