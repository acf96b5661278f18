"""Map every parameter of a model to a depth: 0 = embeddings / stem, 1..L = blocks, L+1 = head.

The map is what every strategy and every learning-rate rule in hftl is written against, so it is
computed in one place, from the model's own structure, and returned as data:

* Hugging Face models (``AutoModelFor...``): the head is everything outside ``model.base_model``
  plus the base model's pooler (pooler-to-classifier). The blocks are the children of the largest
  ``nn.ModuleList`` / ``nn.Sequential`` of identical, parameterised modules inside the base model
  (``encoder.layer`` of BERT/ViT, ``transformer.layer`` of DistilBERT, ``encoder.stages`` of
  ResNet/ConvNeXt). CNNs thus get one depth per stage, transformers one per layer.
* timm models (bare, or wrapped by ``TimmWrapperForImageClassification``): the head is
  ``get_classifier()``, the blocks come from timm's own ``group_matcher(coarse=True)`` (one depth per
  stage for CNNs, per block for ViTs; parts timm merges into the previous group, such as a final
  norm, share the last block's depth), or with ``grouping="fine"`` ``group_matcher(coarse=False)``
  (one depth per block of a stage), the grouping timm's own layer decay uses.
* Speech models: a convolutional feature encoder (wav2vec2, HuBERT, WavLM, ...) is the stem, at
  depth 0, even where it holds more parameters than the transformer blocks. A model with no base-model
  attribute (``WhisperForAudioClassification``: encoder, projector, classifier) has as backbone the
  top-level module that holds the blocks; the rest is the head.
* Some parameters train under no strategy (:attr:`LayerMap.kept_frozen`): fixed tensors of a
  family (Whisper's sinusoidal encoder positions, :data:`FIXED_TENSORS`) and the modules a task
  names in the model's ``hftl_keep_frozen`` attribute (the audio task's
  ``--freeze_feature_encoder``).
* Parameters that are neither head nor block (embeddings, stems, final norms) are placed by
  registration order, which for these models is forward order: before the first block -> 0,
  between blocks -> the next block's depth, after the last block -> L. The exceptions known so far,
  parameters that every block uses but that are registered after the blocks (DeBERTa's and
  MPNet's relative-position tables), are listed in :data:`SHARED_ACROSS_BLOCKS` and get depth 0.

When the structure cannot be read (no repeated block list, no way to tell the head), a
:class:`LayerMapError` names the parameters that could not be placed; ``overrides`` places them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from torch import nn

logger = logging.getLogger(__name__)

HEAD = "head"

# Parameters used by every block but registered after the block list, so registration order would
# put them at depth L. Being shared, they train only when everything trains: depth 0.
SHARED_ACROSS_BLOCKS: dict[str, tuple[str, ...]] = {
    "deberta": (r"(^|\.)encoder\.rel_embeddings\.",),
    "deberta-v2": (r"(^|\.)encoder\.rel_embeddings\.", r"(^|\.)encoder\.LayerNorm\."),
    "mpnet": (r"(^|\.)encoder\.relative_attention_bias\.",),
}


# Tensors a family never trains (fixed, not learned): kept frozen under every strategy.
FIXED_TENSORS: dict[str, tuple[str, ...]] = {
    "whisper": (r"(^|\.)encoder\.embed_positions\.",),
}

# What a model may set to keep modules frozen under every strategy: names of its modules.
KEEP_FROZEN_ATTRIBUTE = "hftl_keep_frozen"


def is_feature_encoder(module: nn.Module) -> bool:
    """A speech model's convolutional feature encoder (wav2vec2, HuBERT, WavLM, data2vec-audio,
    SEW, UniSpeech: ``Wav2Vec2FeatureEncoder`` and its kin), the stem at depth 0."""
    return type(module).__name__.endswith("FeatureEncoder")


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
    prefix, core = _find_core(model)
    named = list(core.named_parameters())
    if not named:
        raise LayerMapError(f"{type(model).__name__} has no parameters to place.")
    override_rules = [(re.compile(pattern), depth) for pattern, depth in (overrides or {}).items()]

    if _is_timm(core):
        head_ids, block_of = _timm_structure(core, coarse=grouping == "coarse")
    else:
        head_ids, block_of = _hf_structure(core)
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
    model_type = getattr(getattr(core, "config", None), "model_type", None)
    shared = [re.compile(p) for p in SHARED_ACROSS_BLOCKS.get(model_type, ())]
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
    timm_grouping = grouping if _is_timm(core) and hasattr(core, "group_matcher") else None
    kept = frozenset(prefix + name for name in _kept_frozen(core, model_type))
    return LayerMap(depths=ordered, num_blocks=num_blocks, grouping=timm_grouping, kept_frozen=kept)


def _kept_frozen(core: nn.Module, model_type: str | None) -> list[str]:
    """Names (in ``core``) of the parameters no strategy trains."""
    fixed = [re.compile(p) for p in FIXED_TENSORS.get(model_type, ())]
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


def _find_core(model: nn.Module) -> tuple[str, nn.Module]:
    """The module whose structure we read (HF or timm model), and its name prefix in ``model``."""
    target = model
    while True:
        if hasattr(target, "get_base_model") and callable(target.get_base_model):  # PEFT
            target = target.get_base_model()
        elif isinstance(getattr(target, "module", None), nn.Module) and not _is_model(target):
            target = target.module  # DDP / FSDP-style wrappers
        else:
            break
    if _is_model(target) and hasattr(target, "timm_model"):  # TimmWrapperFor... / TimmWrapperModel
        target = target.timm_model
    return _prefix_of(model, target), target


def _is_model(module: nn.Module) -> bool:
    return hasattr(module, "base_model_prefix") or _is_timm(module)


def _is_timm(module: nn.Module) -> bool:
    return callable(getattr(module, "get_classifier", None)) and not hasattr(
        module, "base_model_prefix"
    )


# --------------------------------------------------------------------------------------------
# Reading the structure: which parameters are the head, which block each other one is in
# --------------------------------------------------------------------------------------------


def _hf_structure(core: nn.Module) -> tuple[set[int], dict[str, int]]:
    base = getattr(core, "base_model", core)
    stem_ids = {
        id(p)
        for module in base.modules()
        if is_feature_encoder(module)
        for p in module.parameters()
    }
    if base is core:  # no base-model attribute: the backbone is the child that holds the blocks
        container = _largest_block_list(core, exclude=stem_ids)
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
    container = _largest_block_list(base, exclude=head_ids | stem_ids)
    return head_ids, _blocks_from_container(core, container) if container is not None else {}


def _timm_structure(core: nn.Module, coarse: bool = True) -> tuple[set[int], dict[str, int]]:
    classifier = core.get_classifier()  # distilled models (DeiT) have two heads: a tuple
    heads = classifier if isinstance(classifier, (tuple, list)) else (classifier,)
    head_ids = {id(p) for head in heads for p in head.parameters()}
    matcher = core.group_matcher(coarse=coarse) if hasattr(core, "group_matcher") else None
    if not isinstance(matcher, Mapping):
        container = _largest_block_list(core, exclude=head_ids)
        return head_ids, _blocks_from_container(core, container) if container is not None else {}

    from timm.models._manipulate import group_with_matcher

    names = [n for n, p in core.named_parameters() if id(p) not in head_ids]
    stem = [re.compile(p) for p in _patterns(matcher.get("stem"))]
    blocks = [
        re.compile(p) for key, spec in matcher.items() if key != "stem" for p in _patterns(spec)
    ]
    in_blocks = [
        n for n in names if not any(s.match(n) for s in stem) and any(b.match(n) for b in blocks)
    ]
    groups = group_with_matcher(((n, None) for n in in_blocks), matcher)
    block_of = {
        name: i + 1 for i, (_, group) in enumerate(sorted(groups.items())) for name in group
    }
    return head_ids, block_of


def _patterns(spec) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, str):
        return [spec]
    return [s[0] if isinstance(s, (tuple, list)) else s for s in spec]


def _largest_block_list(root: nn.Module, exclude: set[int]) -> nn.Module | None:
    """The ModuleList/Sequential of identical parameterised modules holding the most parameters."""
    best, best_size = None, 0
    for module in root.modules():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)) or len(module) == 0:
            continue
        children = list(module)
        if isinstance(module, nn.Sequential) and len(children) < 2:
            continue
        if len({type(c) for c in children}) != 1:
            continue
        sizes = [sum(p.numel() for p in c.parameters() if id(p) not in exclude) for c in children]
        if min(sizes) == 0:
            continue
        if sum(sizes) > best_size:  # strict: on ties the outermost (first visited) wins
            best, best_size = module, sum(sizes)
    return best


def _blocks_from_container(core: nn.Module, container: nn.Module) -> dict[str, int]:
    """{parameter name in core: 1-based index of the container child that holds it}."""
    block_of = {}
    for index, child in enumerate(container):
        child_ids = {id(p) for p in child.parameters()}
        for param_name, param in core.named_parameters():
            if id(param) in child_ids:
                block_of[param_name] = index + 1
    return block_of


def _prefix_of(root: nn.Module, target: nn.Module) -> str:
    if target is root:
        return ""
    for name, module in root.named_modules():
        if module is target:
            return name + "."
    raise LayerMapError(f"{type(target).__name__} is not inside {type(root).__name__}.")


def count_by_depth(depths: Mapping[str, int], names: Iterable[str] | None = None) -> dict[int, int]:
    """How many tensors sit at each depth (optionally among ``names`` only)."""
    counts: dict[int, int] = {}
    for name in depths if names is None else names:
        counts[depths[name]] = counts.get(depths[name], 0) + 1
    return dict(sorted(counts.items()))
