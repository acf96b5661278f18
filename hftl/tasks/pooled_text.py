"""A text classifier whose head reads the mean (or max) of the encoder's token vectors.

Sentence encoders (sentence-transformers' all-MiniLM, all-mpnet, e5, gte, ...) are trained so that
the *mean* of their token vectors is the sentence's meaning; their [CLS] vector, which
``BertForSequenceClassification``'s pooler reads, was never trained for that. A frozen backbone is
only as good as the feature its head reads, so hftl gives such checkpoints this head: the
encoder (any ``AutoModel`` text encoder, its pooler dropped), pooling over the real tokens (the
attention mask leaves padding out), dropout and one linear ``classifier``. The parameter names are
those of the family's own classifier (``bert.encoder.layer.0...``, ``classifier.weight``).

This file is self-contained on purpose: a saved model carries a copy of it
(``register_for_auto_class``), so anyone loads the result without hftl::

    pipeline("text-classification", model="you/your-model", trust_remote_code=True)

Without ``trust_remote_code`` transformers refuses loudly (``model_type`` ``hftl_pooled_text`` is
not one of its own), rather than loading a different head. It imports only torch and transformers.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

POOLINGS = ("mean", "max")
# keys of the encoder's saved config that describe the checkpoint it came from, not the encoder
_NOT_THE_ENCODERS = (
    "_name_or_path",
    "architectures",
    "id2label",
    "label2id",
    "transformers_version",
)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """[batch, tokens, dim] -> [batch, dim] over the tokens where ``attention_mask`` is 1."""
    if attention_mask is None:
        attention_mask = torch.ones(hidden.shape[:2], device=hidden.device, dtype=torch.long)
    mask = attention_mask[..., None].to(hidden.dtype)
    if pooling == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if pooling == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(1)
    raise ValueError(f"pooling '{pooling}': choose one of {', '.join(POOLINGS)}")


class PooledTextConfig(PretrainedConfig):
    """The encoder's own config (``encoder_config``, a dict) plus the pooling and the head's
    dropout; ``num_labels`` / ``id2label`` / ``label2id`` as for any classifier."""

    model_type = "hftl_pooled_text"

    def __init__(self, encoder_config: dict | None = None, pooling: str = "mean",
                 classifier_dropout: float = 0.1, **kwargs):  # fmt: skip
        if pooling not in POOLINGS:
            raise ValueError(f"pooling '{pooling}': choose one of {', '.join(POOLINGS)}")
        self.encoder_config = {
            k: v for k, v in (encoder_config or {}).items() if k not in _NOT_THE_ENCODERS
        }
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        super().__init__(**kwargs)

    def encoder(self) -> PretrainedConfig:
        """The encoder's config object."""
        values = dict(self.encoder_config)
        return AutoConfig.for_model(values.pop("model_type"), **values)

    @property
    def hidden_size(self) -> int:  # tools read config.hidden_size (Trainer's DeepSpeed "auto")
        return self.encoder().hidden_size


def build_encoder(config: PretrainedConfig) -> PreTrainedModel:
    """``AutoModel`` for ``config`` without a pooler (the head pools the tokens itself)."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    model_class = MODEL_MAPPING[type(config)]
    return model_class(config, **no_pooler(model_class))


def no_pooler(model_class) -> dict:
    """The constructor option that leaves ``model_class``'s pooler out, where it has one."""
    accepts = "add_pooling_layer" in inspect.signature(model_class.__init__).parameters
    return {"add_pooling_layer": False} if accepts else {}


class PooledTextClassifier(PreTrainedModel):
    """Encoder -> pool(tokens) -> dropout -> ``classifier`` (Linear to ``num_labels``).

    ``encoder``: an encoder already loaded (hftl passes the pretrained one); by default one is
    built from ``config.encoder_config`` (``from_pretrained`` then loads its weights).
    """

    config_class = PooledTextConfig
    base_model_prefix = "encoder"  # replaced per instance by the encoder family's own prefix
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: PooledTextConfig, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        encoder = encoder if encoder is not None else build_encoder(config.encoder())
        # the family's own attribute name (bert, roberta, distilbert, ...): parameter names as in
        # its *ForSequenceClassification, so layer names, LoRA targets and overrides carry over
        self.base_model_prefix = encoder.base_model_prefix
        setattr(self, self.base_model_prefix, encoder)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        if module is self.classifier:
            std = getattr(self.base_model.config, "initializer_range", 0.02)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            nn.init.zeros_(module.bias)

    def get_input_embeddings(self):
        return self.base_model.get_input_embeddings()

    def features(self, input_ids=None, attention_mask=None, **inputs) -> torch.Tensor:
        """The pooled vector the classifier reads, [batch, hidden]."""
        inputs = {k: v for k, v in inputs.items() if v is not None}
        out = self.base_model(input_ids=input_ids, attention_mask=attention_mask, **inputs)
        return pool(out.last_hidden_state, attention_mask, self.config.pooling)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None,
                inputs_embeds=None, labels=None, **kwargs):  # fmt: skip
        extra = {"token_type_ids": token_type_ids, "inputs_embeds": inputs_embeds}
        pooled = self.features(input_ids, attention_mask, **extra)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits.float().view(-1, self.config.num_labels), labels.view(-1)
            )
        return SequenceClassifierOutput(loss=loss, logits=logits)
