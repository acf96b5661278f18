"""timm models, bare or inside transformers' ``TimmWrapperForImageClassification``.

* Structure: the head is ``get_classifier()``; the blocks come from timm's own
  ``group_matcher(coarse=True)`` (one depth per stage for CNNs, per block for ViTs; parts timm
  merges into the previous group, such as a final norm, share the last block's depth), or with
  ``--layer_grouping fine`` ``group_matcher(coarse=False)`` (one depth per block of a stage), the
  grouping timm's own layer decay uses. A model without a group matcher gets the generic reader's
  largest block list.
* Split: ``forward_features`` then ``forward_head(pre_logits=True)`` is what the classifier reads;
  a distilled model (DeiT) with two heads on two tokens has no single feature vector.
* Saving: transformers saves the wrapper's tensors as ``timm_model.<name>``, which
  ``timm.create_model("hf-hub:...")`` cannot load; hftl rewrites ``model.safetensors`` under timm's
  own names (transformers loads either), and drops a null ``model_args`` from config.json (timm
  reads it as a dict). The card then shows timm's ``hf-hub:`` snippet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch.nn.functional as F
from torch import nn

from hftl.families.base import Family, Split
from hftl.module_tree import blocks_from_container, largest_block_list
from hftl.storage import atomic_save_tensors

PREFIX = "timm_model."  # TimmWrapper's name for the timm model inside it


def is_timm_module(module: nn.Module) -> bool:
    """A bare timm model (not a transformers model): it has ``get_classifier``."""
    return callable(getattr(module, "get_classifier", None)) and not hasattr(
        module, "base_model_prefix"
    )


def _extract(model, batch):
    timm_model = model.timm_model
    return timm_model.forward_head(
        timm_model.forward_features(batch["pixel_values"]), pre_logits=True
    )


def _head(model, features):
    timm_model = model.timm_model
    # what forward_head does after pre_logits: timm's head dropout, then the classifier
    features = F.dropout(
        features, p=float(getattr(timm_model, "drop_rate", 0.0) or 0.0), training=model.training
    )
    return timm_model.get_classifier()(features)


def _patterns(spec) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, str):
        return [spec]
    return [s[0] if isinstance(s, (tuple, list)) else s for s in spec]


class Timm(Family):
    name = "timm"
    model_types = ("timm_wrapper",)
    split = Split("timm", _extract, _head, linear_head=lambda m: m.timm_model.get_classifier())
    lora_targets = ("qkv",)
    card_tags = ("timm",)

    def owns(self, module):
        return is_timm_module(module)

    def split_for(self, model):
        inner = getattr(model, "timm_model", None)  # the split reads a TimmWrapper's inner model
        if inner is None or not isinstance(inner.get_classifier(), nn.Module):
            return None  # distilled models (DeiT): two heads on two tokens
        return self.split

    def core(self, model):
        inner = getattr(model, "timm_model", None)
        return inner if isinstance(inner, nn.Module) else model

    def grouping(self, core, grouping):
        return grouping if hasattr(core, "group_matcher") else None

    def structure(self, core, *, coarse):
        classifier = core.get_classifier()  # distilled models (DeiT) have two heads: a tuple
        heads = classifier if isinstance(classifier, (tuple, list)) else (classifier,)
        head_ids = {id(p) for head in heads for p in head.parameters()}
        matcher = core.group_matcher(coarse=coarse) if hasattr(core, "group_matcher") else None
        if not isinstance(matcher, Mapping):
            container = largest_block_list(core, exclude=head_ids)
            blocks = blocks_from_container(core, container) if container is not None else {}
            return head_ids, blocks

        from timm.models._manipulate import group_with_matcher

        names = [n for n, p in core.named_parameters() if id(p) not in head_ids]
        stem = [re.compile(p) for p in _patterns(matcher.get("stem"))]
        blocks = [
            re.compile(p) for key, spec in matcher.items() if key != "stem" for p in _patterns(spec)
        ]
        in_blocks = [
            n
            for n in names
            if not any(s.match(n) for s in stem) and any(b.match(n) for b in blocks)
        ]
        groups = group_with_matcher(((n, None) for n in in_blocks), matcher)
        block_of = {
            name: i + 1 for i, (_, group) in enumerate(sorted(groups.items())) for name in group
        }
        return head_ids, block_of

    def configure(self, config, labels):
        config.label_names = list(labels)

    def saved_name(self, name):
        return name.removeprefix(PREFIX)

    def after_save(self, directory: Path) -> None:
        """Make a saved TimmWrapper directory one that timm itself loads too (see the module
        docstring)."""
        from safetensors.torch import load_file

        config_path = directory / "config.json"
        config = json.loads(config_path.read_text())
        if "model_args" in config and config["model_args"] is None:  # timm reads it as a dict
            del config["model_args"]
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        path = directory / "model.safetensors"
        if not path.exists():  # sharded or adapter-only output: leave it to transformers
            return
        state = load_file(path)
        if any(key.startswith(PREFIX) for key in state):
            atomic_save_tensors({self.saved_name(key): t for key, t in state.items()}, path)

    def card_context(self, info):
        return {"timm": True}

    def run_facts(self, config):
        return {"timm_architecture": getattr(config, "architecture", None)}
