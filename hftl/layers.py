"""Map every parameter of a model to a depth: 0 = embeddings / stem, 1..L = blocks, L+1 = head.

The map is what every strategy and every learning-rate rule in hftl is written against, so it is
computed in one place, from the model's own structure, and returned as data:

* Hugging Face models (``AutoModelFor...``): the head is everything outside ``model.base_model``
  plus the base model's pooler (pooler-to-classifier). The blocks are the children of the largest
  ``nn.ModuleList`` / ``nn.Sequential`` of identical, parameterised modules inside the base model
  (``encoder.layer`` of BERT/ViT, ``transformer.layer`` of DistilBERT, ``encoder.stages`` of
  ResNet/ConvNeXt). CNNs thus get one depth per stage, transformers one per layer.
* A family that reads its own structure (:mod:`hftl.families`; timm models, bare or wrapped by
  ``TimmWrapperForImageClassification``: timm's ``group_matcher``, ``grouping`` coarse or fine)
  gives the head and the blocks itself.
* Speech models: the family's stem modules (a convolutional feature encoder: wav2vec2, HuBERT,
  WavLM, ...) are at depth 0, even where they hold more parameters than the transformer blocks. A
  model with no base-model attribute (``WhisperForAudioClassification``: encoder, projector,
  classifier) has as backbone the top-level module that holds the blocks; the rest is the head.
* Some parameters train under no strategy (:attr:`LayerMap.kept_frozen`): a family's fixed
  tensors (Whisper's sinusoidal encoder positions) and the modules a task names in the model's
  ``hftl_keep_frozen`` attribute (the audio task's ``--freeze_feature_encoder``).
* Parameters that are neither head nor block (embeddings, stems, final norms) are placed by
  registration order, which for these models is forward order: before the first block -> 0,
  between blocks -> the next block's depth, after the last block -> L. The exceptions known so far,
  parameters that every block uses but that are registered after the blocks (DeBERTa's and
  MPNet's relative-position tables), are the family's ``shared_across_blocks``: depth 0.

When the structure cannot be read (no repeated block list, no way to tell the head), a
:class:`LayerMapError` names the parameters that could not be placed; ``overrides`` places them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from torch import nn

from hftl.families import GENERIC, Family, family_of
from hftl.module_tree import blocks_from_container, largest_block_list, prefix_of

logger = logging.getLogger(__name__)

HEAD = "head"

# What a model may set to keep modules frozen under every strategy: names of its modules.
KEEP_FROZEN_ATTRIBUTE = "hftl_keep_frozen"


class LayerMapError(ValueError):
    """Raised when hftl cannot place some parameters of a model in the layer map."""


@dataclass(frozen=True)
class LayerMap:
    """Depth of every parameter (by name, as ``model.named_parameters()`` spells it).

    Attributes:
        depths: parameter name -> depth (0 embeddings/stem, 1..num_blocks blocks, head_depth head).
        num_blocks: L, the number of blocks.
        grouping: for timm models, the ``group_matcher`` grouping the blocks come from
            (``coarse`` or ``fine``); None for others.
        kept_frozen: parameters that no strategy trains (fixed tensors, modules the task keeps
            frozen); they keep their depth, for the record and the LR groups.
    """

    depths: dict[str, int]
    num_blocks: int
    grouping: str | None = None
    kept_frozen: frozenset[str] = frozenset()

    @property
    def head_depth(self) -> int:
        return self.num_blocks + 1

    def names_at(self, depth: int) -> list[str]:
        return [name for name, d in self.depths.items() if d == depth]

    def summary(self) -> str:
        """One line per depth: how many tensors sit there and one example name."""
        lines = []
        for depth in sorted(set(self.depths.values())):
            names = self.names_at(depth)
            role = "embeddings" if depth == 0 else "head" if depth == self.head_depth else "block"
            lines.append(f"  depth {depth:>3} {role:<10} {len(names):>4} tensors  e.g. {names[0]}")
        return "\n".join(lines)


def layer_ids(model: nn.Module, overrides: Mapping[str, int | str] | None = None) -> dict[str, int]:
    """Map every parameter name of ``model`` to its depth.

    Args:
        model: a transformers ``PreTrainedModel`` (any ``AutoModelFor...``), a timm model, a
            ``TimmWrapperForImageClassification``, or one of these wrapped by PEFT or DDP.
        overrides: optional ``{regex: depth}``; a parameter whose name matches a regex
            (``re.search``) gets that depth, or the head's depth where the value is ``"head"``.

    Returns:
        ``{parameter name: depth}`` with 0 for embeddings / stem, 1..L for the blocks in forward
        order and L+1 for the task head.

    Raises:
        LayerMapError: naming the parameters that could not be placed.

    Example:
        >>> ids = layer_ids(BertForSequenceClassification(BertConfig(num_hidden_layers=2)))
        >>> ids["bert.embeddings.word_embeddings.weight"], ids["classifier.weight"]
        (0, 3)
    """
    return build_layer_map(model, overrides).depths


LAYER_GROUPINGS = ("coarse", "fine")


def build_layer_map(
    model: nn.Module,
    overrides: Mapping[str, int | str] | None = None,
    *,
    grouping: str = "coarse",
) -> LayerMap:
    """Like :func:`layer_ids`, returning a :class:`LayerMap` that also knows L.

    ``grouping`` (timm models): ``coarse`` takes timm's ``group_matcher(coarse=True)`` (one depth
    per stage of a CNN), ``fine`` its ``group_matcher(coarse=False)``, which timm's own layer
    decay (``param_groups_layer_decay``, ``train.py --layer-decay``) uses (one depth per block
    of a stage), so a ``layer_decay`` tuned in timm means the same schedule here. Other models
    have one grouping.
    """
    if grouping not in LAYER_GROUPINGS:
        raise ValueError(f"layer grouping '{grouping}': choose one of {', '.join(LAYER_GROUPINGS)}")
    prefix, core, family = _find_core(model)
    named = list(core.named_parameters())
    if not named:
        raise LayerMapError(f"{type(model).__name__} has no parameters to place.")
    override_rules = [(re.compile(pattern), depth) for pattern, depth in (overrides or {}).items()]

    structure = family.structure(core, coarse=grouping == "coarse")
    head_ids, block_of = structure if structure is not None else _hf_structure(core, family)
    if not block_of and not override_rules:
        shown = ", ".join(name for name, _ in named[:8])
        raise LayerMapError(
            f"hftl cannot place the {len(named)} parameters of {type(core).__name__} ({shown}, ...): "
            "it found no repeated block list (nn.ModuleList of identical layers) and no timm "
            "group_matcher. Pass overrides={regex: depth} to layer_ids / build_layer_map."
        )

    # Everything that is neither head nor block goes by registration (= forward) order.
    head = {name for name, param in named if id(param) in head_ids}
    depths: dict[str, int] = {}
    pending: list[str] = []
    seen_block = False
    for name, _ in named:
        if name in head:
            continue
        if name in block_of:
            for waiting in pending:  # between blocks: joins the block that runs next
                depths[waiting] = block_of[name]
            pending.clear()
            depths[name] = block_of[name]
            seen_block = True
        elif seen_block:
            pending.append(name)
        else:
            depths[name] = 0
    last_block = max(block_of.values(), default=0)
    depths.update(dict.fromkeys(pending, last_block))  # after the last block: final norms etc.
    shared = [re.compile(p) for p in family.shared_across_blocks]
    for name in depths:
        if any(p.search(name) for p in shared):
            depths[name] = 0

    if override_rules:
        placed = set()
        for name, _ in named:
            for pattern, value in override_rules:
                if pattern.search(name):
                    placed.add(name)
                    if value == HEAD:
                        head.add(name)
                        depths.pop(name, None)
                    else:
                        head.discard(name)
                        depths[name] = int(value)
                    break
        unplaced = [name for name, _ in named if name not in placed] if not block_of else []
        if unplaced:
            raise LayerMapError(
                f"hftl cannot place {len(unplaced)} parameters of {type(core).__name__}: "
                f"{', '.join(unplaced[:10])}{' ...' if len(unplaced) > 10 else ''}. "
                "It found no block list, so overrides must place every parameter."
            )
    num_blocks = max(depths.values(), default=0)
    depths.update(dict.fromkeys(head, num_blocks + 1))
    ordered = {prefix + name: depths[name] for name, _ in named}
    kept = frozenset(prefix + name for name in _kept_frozen(core, family))
    return LayerMap(depths=ordered, num_blocks=num_blocks,
                    grouping=family.grouping(core, grouping), kept_frozen=kept)  # fmt: skip


def _kept_frozen(core: nn.Module, family: Family) -> list[str]:
    """Names (in ``core``) of the parameters no strategy trains."""
    fixed = [re.compile(p) for p in family.fixed_tensors]
    names = [name for name, _ in core.named_parameters() if any(p.search(name) for p in fixed)]
    modules = dict(core.named_modules())
    for module_name in getattr(core, KEEP_FROZEN_ATTRIBUTE, None) or ():
        if module_name not in modules:
            raise LayerMapError(
                f"{type(core).__name__}.{KEEP_FROZEN_ATTRIBUTE} names {module_name!r}, which is "
                "not one of its modules"
            )
        names += [f"{module_name}.{n}" for n, _ in modules[module_name].named_parameters()]
    return names


def check_head(layer_map: LayerMap, model: nn.Module) -> None:
    """A classifier must have a head hftl can see: without one, ``feature_extraction`` would
    train nothing and every strategy would leave the new classifier untrained."""
    if not layer_map.names_at(layer_map.head_depth):
        raise LayerMapError(
            f"hftl found no head in {type(model).__name__} (no parameters outside its base model "
            "or timm classifier); pass overrides={regex: 'head'} to build_layer_map and hand the "
            "map to TransferTrainer(layer_map=...)"
        )


def num_blocks(model: nn.Module) -> int:
    """L, the number of blocks hftl sees in ``model`` (see :func:`layer_ids`)."""
    return build_layer_map(model).num_blocks


# --------------------------------------------------------------------------------------------
# Finding the model inside its wrappers
# --------------------------------------------------------------------------------------------


def _find_core(model: nn.Module) -> tuple[str, nn.Module, Family]:
    """The module whose structure we read (the model inside PEFT, DDP and family wrappers), its
    name prefix in ``model``, and its family."""
    target = model
    while True:
        if hasattr(target, "get_base_model") and callable(target.get_base_model):  # PEFT
            target = target.get_base_model()
        elif isinstance(getattr(target, "module", None), nn.Module) and not _is_model(target):
            target = target.module  # DDP / FSDP-style wrappers
        else:
            break
    family = family_of(target)
    core = family.core(target)  # e.g. the timm model inside TimmWrapperFor...
    prefix = prefix_of(model, core)
    if prefix is None:
        raise LayerMapError(f"{type(core).__name__} is not inside {type(model).__name__}.")
    return prefix, core, family


def _is_model(module: nn.Module) -> bool:
    return hasattr(module, "base_model_prefix") or family_of(module) is not GENERIC


# --------------------------------------------------------------------------------------------
# Reading the structure: which parameters are the head, which block each other one is in
# --------------------------------------------------------------------------------------------


def _hf_structure(core: nn.Module, family: Family) -> tuple[set[int], dict[str, int]]:
    base = getattr(core, "base_model", core)
    stem_ids = {
        id(p) for name in family.stem_modules(base) for p in base.get_submodule(name).parameters()
    }
    if base is core:  # no base-model attribute: the backbone is the child that holds the blocks
        container = largest_block_list(core, exclude=stem_ids)
        holder = next(
            (child for child in core.children() if container is not None
             and any(m is container for m in child.modules())),
            None,
        )  # fmt: skip
        base = holder if holder is not None else core
    base_param_ids = {id(p) for p in base.parameters()}
    head_ids = {id(p) for p in core.parameters() if id(p) not in base_param_ids}
    for name, module in base.named_modules():
        if name.split(".")[-1] == "pooler":
            head_ids |= {id(p) for p in module.parameters()}
    container = largest_block_list(base, exclude=head_ids | stem_ids)
    return head_ids, blocks_from_container(core, container) if container is not None else {}


def count_by_depth(depths: Mapping[str, int], names: Iterable[str] | None = None) -> dict[int, int]:
    """How many tensors sit at each depth (optionally among ``names`` only)."""
    counts: dict[int, int] = {}
    for name in depths if names is None else names:
        counts[depths[name]] = counts.get(depths[name], 0) + 1
    return dict(sorted(counts.items()))
