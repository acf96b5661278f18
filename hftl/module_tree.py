"""Reading a model's module tree: its repeated block list, which block holds each parameter, where
a sub-module sits. Shared by the layer map (:mod:`hftl.layers`) and the families that read their
own structure (:mod:`hftl.families`)."""

from __future__ import annotations

from torch import nn


def largest_block_list(root: nn.Module, exclude: set[int]) -> nn.Module | None:
    """The ModuleList/Sequential of identical parameterised modules holding the most parameters
    (those whose ``id`` is in ``exclude`` left out)."""
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


def blocks_from_container(core: nn.Module, container: nn.Module) -> dict[str, int]:
    """{parameter name in core: 1-based index of the container child that holds it}."""
    block_of = {}
    for index, child in enumerate(container):
        child_ids = {id(p) for p in child.parameters()}
        for param_name, param in core.named_parameters():
            if id(param) in child_ids:
                block_of[param_name] = index + 1
    return block_of


def prefix_of(root: nn.Module, target: nn.Module) -> str | None:
    """``target``'s name in ``root`` with a trailing dot (``""`` for root itself); None where
    ``target`` is not inside ``root``."""
    if target is root:
        return ""
    for name, module in root.named_modules():
        if module is target:
            return name + "."
    return None
