"""hftl's pooled text head (:mod:`hftl.tasks.pooled_text`): mean or max of the encoder's token
vectors, dropout and one linear classifier, over any text encoder."""

from hftl.families.base import Family, Split, text_inputs


def _pooled_tokens(model, batch):
    return model.features(**text_inputs(batch))


class PooledText(Family):
    name = "pooled_text"
    model_types = ("hftl_pooled_text",)
    split = Split(
        "pooled",
        _pooled_tokens,
        lambda m, f: m.classifier(m.dropout(f)),
        linear_head=lambda m: m.classifier,
    )

    def encoder(self, model):
        return model.base_model  # BERT, RoBERTa, DistilBERT, ...: their family's LoRA targets
