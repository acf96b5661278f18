"""What a model family is: everything hftl knows about one architecture (or a few that share a
design), so that the rest of hftl asks the family and never tests a ``model_type``.

A family says where the backbone ends (:class:`Split`: for the feature cache, LP-FT's probe,
``hftl advise`` and the reference head of LwF / replay), what the layer map must know beyond the
module tree (parameters shared by every block, tensors that never train, a structure of its own),
which modules LoRA adapts by default, and how a saved model differs from the model in memory.
A family that hftl does not know gets :data:`GENERIC`: no split, the generic structure reader,
LoRA on every Linear layer of the blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class Split:
    """Where a family's backbone ends: ``extract(model, batch)`` returns what the head reads,
    ``head(model, features)`` the logits, so that ``head(extract(x)) == model(x)`` in eval mode
    (tests/test_feature_cache.py checks this for every family)."""

    name: str
    extract: Callable[[nn.Module, dict], torch.Tensor]
    head: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    linear_head: Callable[[nn.Module], nn.Linear] | None = None  # for --linear_probe
    # for --linear_probe where the head is several linear layers in a row: writes logits =
    # weight @ features + bias into them
    write_linear: Callable[[nn.Module, torch.Tensor, torch.Tensor], None] | None = None

    @property
    def takes_linear_probe(self) -> bool:
        return self.linear_head is not None or self.write_linear is not None

    def set_linear(self, model: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Make the head compute ``weight @ features + bias`` (a fitted linear probe)."""
        with torch.no_grad():
            if self.write_linear is not None:
                self.write_linear(model, weight, bias)
                return
            head = self.linear_head(model)
            head.weight.copy_(weight.to(head.weight))
            head.bias.copy_(bias.to(head.bias))


def is_feature_encoder(module: nn.Module) -> bool:
    """A speech model's convolutional feature encoder (wav2vec2, HuBERT, WavLM, data2vec-audio,
    SEW, UniSpeech: ``Wav2Vec2FeatureEncoder`` and its kin)."""
    return type(module).__name__.endswith("FeatureEncoder")


class Family:
    """A model family. Subclasses (one module each in :mod:`hftl.families`) set what differs.

    Attributes:
        name: the registry name.
        model_types: the ``config.model_type`` values of the family (each claimed by one family).
        split: where the backbone ends (None: hftl does not know, so no feature cache).
        shared_across_blocks: regexes of parameters that every block uses but that are registered
            after the blocks (relative-position tables): depth 0, not the last block's.
        fixed_tensors: regexes of tensors that are fixed, not learned (sinusoidal positions):
            kept frozen under every strategy.
        lora_targets: the last name component of the modules LoRA adapts by default (the
            attention query / value projections); none found: every Linear layer of the blocks.
        card_tags: Hub tags the model card adds.
    """

    name: str = ""
    model_types: tuple[str, ...] = ()
    split: Split | None = None
    shared_across_blocks: tuple[str, ...] = ()
    fixed_tensors: tuple[str, ...] = ()
    lora_targets: tuple[str, ...] = ()
    card_tags: tuple[str, ...] = ()

    def owns(self, module: nn.Module) -> bool:
        """Whether ``module``, a model without a transformers config, is of this family (bare
        timm models)."""
        return False

    def split_for(self, model: nn.Module) -> Split | None:
        """The split of ``model`` (None where this model's head does not read one feature
        vector, e.g. a head over every layer's output)."""
        return self.split

    def core(self, model: nn.Module) -> nn.Module:
        """The module whose structure the layer map reads (a wrapper's inner model)."""
        return model

    def structure(self, core: nn.Module, *, coarse: bool) -> tuple[set[int], dict[str, int]] | None:
        """(ids of the head's parameters, {parameter name: block}) read the family's own way, or
        None for the generic reader (:mod:`hftl.layers`). ``coarse``: one depth per stage, not
        per block, where the family has both."""
        return None

    def grouping(self, core: nn.Module, grouping: str) -> str | None:
        """The ``--layer_grouping`` the map was built with, where the family has several."""
        return None

    def stem_modules(self, model: nn.Module) -> list[str]:
        """Names of the modules that are the stem (depth 0) whatever their size: a speech
        model's convolutional feature encoder (``Wav2Vec2FeatureEncoder`` and its kin, in any
        family), which may hold more parameters than the transformer blocks."""
        return [name for name, module in model.named_modules() if is_feature_encoder(module)]

    def encoder(self, model: nn.Module) -> nn.Module | None:
        """Where ``model``'s blocks are another family's model (a head of hftl's own over any
        encoder), that model: its family says what LoRA adapts."""
        return None

    def input_window(self, config) -> float | None:
        """Seconds of the model's fixed input window (Whisper's encoder reads 30 s however short
        the clip), or None where its input has no fixed length."""
        return None

    def set_input_window(self, model_or_config, seconds: int) -> None:
        """Make the fixed input window ``seconds`` long: a loaded model keeps the first of its
        position embeddings, a config (a model built from scratch) says the new length."""
        raise ValueError(f"{self.name} models have no fixed input window")

    def configure(self, config, labels: list[str]) -> None:
        """Set what the family's config needs for a new head over ``labels`` (in place)."""

    def saved_name(self, name: str) -> str:
        """A tensor's name in the saved ``model.safetensors`` (the name in memory by default)."""
        return name

    def after_save(self, directory: Path) -> None:
        """Called on a saved model directory (e.g. to rename its tensors for another library)."""

    def card_context(self, info: dict) -> dict:
        """Extra values for the model card template (e.g. a snippet for another library)."""
        return {}

    def run_facts(self, config) -> dict:
        """Facts about the model for ``run_info.json``."""
        return {}


GENERIC = Family()
GENERIC.name = "generic"


# --------------------------------------------------------------------------------------------
# Pieces several families' splits share
# --------------------------------------------------------------------------------------------


def text_inputs(batch: dict) -> dict:
    """A text model's own inputs from a batch."""
    keys = ("input_ids", "attention_mask", "token_type_ids")
    return {k: batch[k] for k in keys if k in batch}


def first_token(model: nn.Module, batch: dict) -> torch.Tensor:
    """The encoder's last hidden state at token 0 ([CLS] / <s>), what BERT-style heads read."""
    return model.base_model(**text_inputs(batch)).last_hidden_state[:, 0]


def class_token(model: nn.Module, batch: dict) -> torch.Tensor:
    """An image transformer's last hidden state at its [CLS] token, what ViT-style heads read."""
    return model.base_model(pixel_values=batch["pixel_values"]).last_hidden_state[:, 0]


def pooled_image(model: nn.Module, batch: dict) -> torch.Tensor:
    """An image backbone's pooled output (the mean of its last stage), what CNN heads read."""
    return model.base_model(pixel_values=batch["pixel_values"]).pooler_output
