"""Catastrophic-forgetting guards, one module each, behind a validated registry.

A guard is turned on by naming it in ``guards: [...]`` (or, for early stopping, by its own
option) and adds callbacks and/or a loss penalty, which
:class:`~hftl.TransferTrainer` adds to the task loss in ``compute_loss`` (the same on the
cached-feature and the full-model path). A new guard is one module here, registered below.
"""

import copy

from hftl.guards.base import Guard
from hftl.guards.early_stopping import EarlyStopping
from hftl.guards.ewc import EWC
from hftl.guards.l2sp import L2SP
from hftl.guards.lwf import LwF
from hftl.guards.replay import Replay
from hftl.guards.wise_ft import WiseFT
from hftl.registry import Registry

GUARDS: Registry[Guard] = Registry("guard")
for _guard in (EarlyStopping(), L2SP(), EWC(), LwF(), Replay(), WiseFT()):
    GUARDS.register(_guard)


def active_guards(args) -> list[Guard]:
    """The guards ``args`` turn on, in registration order: a copy of each, for one trainer (what
    a guard keeps in ``setup``, such as the starting weights, belongs to that run)."""
    return [copy.copy(guard) for guard in GUARDS if guard.active(args)]


__all__ = ["GUARDS", "Guard", "active_guards"]
