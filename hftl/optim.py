"""AdamW-ready parameter groups with layer-wise learning-rate decay (LLRD).

A parameter at depth ``d`` (see :mod:`hftl.layers`) trains at ``lr * layer_decay ** (L + 1 - d)``;
the head (depth ``L + 1``) at ``lr * head_lr_multiplier``. The absolute learning rate is written
into every group, so any PyTorch / transformers scheduler scales each group from its own value
(timm's ``lr_scale`` key would be ignored by them).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from torch import nn

from hftl.layers import LayerMap, build_layer_map

logger = logging.getLogger(__name__)

# Position embeddings and special tokens: decaying them towards zero only destroys information.
_NO_DECAY_NAME = re.compile(
    r"(^|\.|_)(cls_token|dist_token|reg_token|mask_token|pos_embed|position_embeddings?|"
    r"position_embedding|relative_position_bias_table)(\.|$)"
)


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    layer_decay: float = 1.0,
    head_lr_multiplier: float = 1.0,
    weight_decay: float = 0.0,
    include_frozen: bool = False,
    layer_map: LayerMap | None = None,
    log: bool = True,
) -> list[dict]:
    """Split ``model``'s parameters into optimizer groups by depth and by weight decay.

    Args:
        model: any model :func:`hftl.layer_ids` understands.
        lr: the base learning rate (that of the top block when ``layer_decay`` is 1).
        layer_decay: factor in (0, 1] applied once per depth below the head; 1.0 turns LLRD off.
        head_lr_multiplier: the head trains at ``lr * head_lr_multiplier``.
        weight_decay: applied to weights; biases, norm weights (all tensors with ndim <= 1),
            position embeddings and class/register tokens get 0.
        include_frozen: also put parameters with ``requires_grad=False`` into groups (for gradual
            unfreezing, where they are unfrozen later and must already be in the optimizer).
        layer_map: a precomputed map (default: ``build_layer_map(model)``).
        log: log the group table at INFO level.

    Returns:
        A list of dicts, one per (depth, decay / no decay), sorted by depth, each with ``params``,
        ``param_names``, ``lr``, ``weight_decay`` and ``depth``; ready for ``torch.optim.AdamW``.

    Example:
        >>> optimizer = torch.optim.AdamW(param_groups(model, lr=1e-4, layer_decay=0.8))
    """
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    if head_lr_multiplier <= 0:
        raise ValueError(f"head_lr_multiplier must be > 0, got {head_lr_multiplier}")
    layer_map = layer_map or build_layer_map(model)
    num_blocks = layer_map.num_blocks
    no_decay = no_weight_decay_names(model)

    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not (param.requires_grad or include_frozen):
            continue
        depth = layer_map.depths[name]
        decays = weight_decay > 0 and name not in no_decay
        if depth == num_blocks + 1:
            group_lr = lr * head_lr_multiplier
        else:
            group_lr = lr * layer_decay ** (num_blocks + 1 - depth)
        group = groups.setdefault(
            (depth, decays),
            {
                "params": [],
                "param_names": [],
                "lr": group_lr,
                "weight_decay": weight_decay if decays else 0.0,
                "depth": depth,
            },
        )
        group["params"].append(param)
        group["param_names"].append(name)

    result = [groups[key] for key in sorted(groups, key=lambda k: (k[0], not k[1]))]
    if log and result:
        logger.info(
            "hftl parameter groups (L=%d blocks%s):\n%s",
            num_blocks,
            f", timm {layer_map.grouping} grouping" if layer_map.grouping else "",
            format_groups(result, num_blocks, by_depth=True),
        )
    return result


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Names of parameters that must not be weight-decayed (biases, norms, tokens, pos. emb.)."""
    names = {
        name
        for name, param in model.named_parameters()
        if param.ndim <= 1 or _NO_DECAY_NAME.search(name)
    }
    # timm models declare theirs; map those to the names in `model` (which may wrap them).
    for prefix, module in model.named_modules():
        declared = getattr(module, "no_weight_decay", None)
        if callable(declared):
            try:
                own = declared()
            except TypeError:
                continue
            if isinstance(own, (set, list, tuple)):
                names |= {f"{prefix}.{n}" if prefix else n for n in own}
    return names


def format_groups(
    groups: list[Mapping], num_blocks: int | None = None, *, by_depth: bool = False
) -> str:
    """A compact table: depth, role, #tensors, #params, lr, weight decay. ``by_depth``: one row
    per depth (a depth's decayed and undecayed groups together, wd shown as ``0.01/0``)."""
    head_depth = None if num_blocks is None else num_blocks + 1
    rows = [f"{'depth':>5}  {'role':<10} {'tensors':>7} {'params':>12} {'lr':>10} {'wd':>7}"]
    merged: dict = {}
    for index, group in enumerate(groups):
        key = (group.get("depth", "?"), group["lr"]) if by_depth else index
        row = merged.setdefault(key, {"depth": group.get("depth", "?"), "lr": group["lr"],
                                      "tensors": 0, "params": 0, "wd": set()})  # fmt: skip
        row["tensors"] += len(group["params"])
        row["params"] += sum(p.numel() for p in group["params"])
        row["wd"].add(group["weight_decay"])
    for row in merged.values():
        depth = row["depth"]
        role = "embeddings" if depth == 0 else "head" if depth == head_depth else "block"
        wd = "/".join(f"{w:.3g}" for w in sorted(row["wd"], reverse=True))
        rows.append(
            f"{depth:>5}  {role:<10} {row['tensors']:>7} {row['params']:>12,} "
            f"{row['lr']:>10.3g} {wd:>7}"
        )
    total_tensors = sum(r["tensors"] for r in merged.values())
    total_params = sum(r["params"] for r in merged.values())
    rows.append(f"{'total':>5}  {'':<10} {total_tensors:>7} {total_params:>12,}")
    if any(len(r["wd"]) > 1 for r in merged.values()):
        rows.append("(wd a/0: biases and norm weights get no weight decay)")
    return "\n".join(rows)
