"""Freezing by depth: the mechanics every strategy uses (:mod:`hftl.strategies`).

Each depth-based strategy reduces to one number, the lowest depth that trains (its
``min_depth``; :func:`hftl.strategies.min_trainable_depth`); :func:`set_trainable` is the one
place that flips ``requires_grad``.
Frozen parts stay frozen for real: no gradient (so AdamW skips them, weight decay included), and
they run in eval mode while the rest trains: BatchNorm keeps its running statistics, dropout and
stochastic depth are off (see :func:`keep_frozen_in_eval`). A frozen backbone is then a fixed
function, which is what makes cached feature extraction exact.
"""

from __future__ import annotations

from torch import nn

from hftl.layers import LayerMap


def set_trainable(model: nn.Module, layer_map: LayerMap, min_depth: int) -> dict[str, int]:
    """Train exactly the parameters at depth >= ``min_depth``, but for the map's ``kept_frozen``;
    freeze the rest.

    Also makes the frozen part run in eval mode during training (:func:`keep_frozen_in_eval`).
    Returns ``{"trainable": n, "frozen": m}`` tensor counts.
    """
    counts = {"trainable": 0, "frozen": 0}
    for name, param in model.named_parameters():
        trainable = layer_map.depths[name] >= min_depth and name not in layer_map.kept_frozen
        param.requires_grad_(trainable)
        if not trainable:
            param.grad = None
        counts["trainable" if trainable else "frozen"] += 1
    keep_frozen_in_eval(model)
    return counts


# --------------------------------------------------------------------------------------------
# Frozen means inference mode: requires_grad=False alone neither stops BatchNorm statistics from
# moving nor turns dropout off
# --------------------------------------------------------------------------------------------


def keep_frozen_in_eval(model: nn.Module) -> None:
    """While ``model`` trains, every module whose parameters are all frozen runs in eval mode.

    ``Trainer`` calls ``model.train()`` before every step. A forward pre-hook on ``model`` then
    puts each maximal frozen sub-module (all of its parameters ``requires_grad=False``) in eval
    mode, so its BatchNorm statistics stay, and its dropout / stochastic depth / attention dropout
    are off, and sets every other module to train; a block unfrozen later trains normally from its
    next forward on. ``model.eval()`` is untouched. Installing twice is a no-op.
    """
    if getattr(model, "_hftl_frozen_guard", None) is None:
        model._hftl_frozen_guard = model.register_forward_pre_hook(_frozen_to_eval)


def _frozen_to_eval(model: nn.Module, _inputs) -> None:
    if model.training:
        _set_modes(model)


def _set_modes(module: nn.Module) -> None:
    params = list(module.parameters())
    if params and not any(p.requires_grad for p in params):
        if module.training:
            module.eval()
        return
    module.training = True
    for child in module.children():
        _set_modes(child)


def keep_frozen_norms_in_eval(model: nn.Module) -> int:
    """Keep every BatchNorm-like layer whose parameters are all frozen in eval mode.

    ``Trainer`` (and any loop) calls ``model.train()``, which would let frozen BatchNorm layers keep
    updating their running mean/var. A forward pre-hook puts such a layer back in eval mode just
    before it runs, for as long as its parameters are frozen; once they are unfrozen it follows
    ``model.train()`` / ``model.eval()`` again. Installing twice is a no-op. Returns how many
    layers are guarded.
    """
    guarded = 0
    for module in model.modules():
        if not _has_running_stats(module) or not any(
            True for _ in module.parameters(recurse=False)
        ):
            continue
        if getattr(module, "_hftl_norm_guard", None) is None:
            module._hftl_norm_guard = module.register_forward_pre_hook(_eval_if_frozen)
        guarded += 1
    return guarded


def _has_running_stats(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats


def _eval_if_frozen(module: nn.Module, _inputs) -> None:
    if module.training and not any(p.requires_grad for p in module.parameters(recurse=False)):
        module.train(False)
