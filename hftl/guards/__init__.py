"""Catastrophic-forgetting guards, one module each, behind a validated registry.

A guard is turned on by its arguments and adds callbacks and/or a loss penalty, which
:class:`~hftl.TransferTrainer` adds to the task loss in ``compute_loss`` (the same on the
cached-feature and the full-model path). A new guard is one module here, registered below.
"""

from hftl.guards.base import Guard
from hftl.guards.early_stopping import EarlyStopping
from hftl.registry import Registry

GUARDS: Registry[Guard] = Registry("guard")
for _guard in (EarlyStopping(),):
    GUARDS.register(_guard)


def active_guards(args) -> list[Guard]:
    """The guards ``args`` turn on, in registration order."""
    return [guard for guard in GUARDS if guard.active(args)]


__all__ = ["GUARDS", "Guard", "active_guards"]
