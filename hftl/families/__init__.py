"""Model families, one module each, behind a validated registry.

    from hftl.families import family_of
    family_of(model).split_for(model)      # where its backbone ends (or None)
    family_of(model).saved_name(name)      # a tensor's name in the saved model

A family (:class:`~hftl.families.base.Family`) is what hftl knows about an architecture beyond
its module tree: the backbone / head split of the feature cache, layer-map hints, LoRA's default
targets, how its saved files differ from the model in memory, what its card adds. Each
``model_type`` belongs to one family (checked when it registers); a model of a type no family
claims gets :data:`~hftl.families.base.GENERIC`. Supporting a new architecture is one module
here, registered below, plus its tiny model in ``hftl.testing.TINY_MODELS`` (the test matrix
then runs every strategy on it).
"""

from __future__ import annotations

from torch import nn

from hftl.families.audio_spectrogram import AST
from hftl.families.base import GENERIC, Family, Split
from hftl.families.bert import Bert
from hftl.families.convnext import ConvNext
from hftl.families.deberta import Deberta
from hftl.families.deit import DeiT
from hftl.families.distilbert import DistilBert
from hftl.families.pooled_text import PooledText
from hftl.families.resnet import ResNet
from hftl.families.roberta import Roberta
from hftl.families.speech import Speech
from hftl.families.swin import Swin
from hftl.families.timm import Timm
from hftl.families.vit import ViT
from hftl.families.whisper import Whisper
from hftl.registry import Registry


def _claims_new_types(family: Family, registered: list[Family]) -> None:
    if not isinstance(family, Family):
        raise TypeError(f"family {family.name!r}: must be a hftl.families.base.Family")
    if not family.model_types:
        raise ValueError(f"family {family.name!r}: names no model_types")
    for other in registered:
        taken = sorted(set(family.model_types) & set(other.model_types))
        if taken:
            raise ValueError(
                f"family {family.name!r}: model type {taken[0]!r} belongs to family {other.name!r}"
            )


FAMILIES: Registry[Family] = Registry("family", check=_claims_new_types)
for _family in (Bert(), Roberta(), DistilBert(), Deberta(), PooledText(), ViT(), DeiT(), Swin(),
                ResNet(), ConvNext(), Timm(), Speech(), Whisper(), AST()):  # fmt: skip
    FAMILIES.register(_family)


def family_for_type(model_type: str | None) -> Family:
    """The family of ``model_type`` (:data:`GENERIC` where none claims it)."""
    return next((f for f in FAMILIES if model_type in f.model_types), GENERIC)


def family_of(model: nn.Module) -> Family:
    """The family of a model: by its config's ``model_type``, or for a model without a
    transformers config (a bare timm model) the family that owns it; else :data:`GENERIC`."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is not None:
        return family_for_type(model_type)
    return next((f for f in FAMILIES if f.owns(model)), GENERIC)


def split_for(model: nn.Module) -> Split | None:
    """Where ``model``'s backbone ends, or None where hftl does not know."""
    return family_of(model).split_for(model)


__all__ = ["FAMILIES", "GENERIC", "Family", "Split", "family_for_type", "family_of", "split_for"]
