"""Transfer strategies, one module each, behind a validated registry.

    from hftl.strategies import STRATEGIES
    STRATEGIES.get("partial")      # the Partial strategy; an unknown name lists the choices

A new strategy is one module here: a :class:`~hftl.strategies.base.Strategy` subclass (its
freezing rule, callbacks, arguments dataclass and card sentence), registered below.
"""

from hftl.registry import Registry
from hftl.strategies.base import Strategy
from hftl.strategies.feature_extraction import FeatureExtraction
from hftl.strategies.full import Full
from hftl.strategies.gradual import Gradual
from hftl.strategies.lora import Lora
from hftl.strategies.lp_ft import LinearProbeThenFinetune
from hftl.strategies.partial import Partial

STRATEGIES: Registry[Strategy] = Registry("strategy")
for _strategy in (
    FeatureExtraction(),
    Partial(),
    Full(),
    Gradual(),
    Lora(),
    LinearProbeThenFinetune(),
):
    STRATEGIES.register(_strategy)


def min_trainable_depth(strategy: str, num_blocks: int, *, num_trainable_layers: int | None = None,
                        stage: int = 0) -> int:  # fmt: skip
    """The lowest depth that trains under the registered ``strategy`` (its ``min_depth``).

    Args:
        strategy: a name in :data:`STRATEGIES`.
        num_blocks: L, the model's number of blocks.
        num_trainable_layers: for ``partial``, how many top blocks train (0..L).
        stage: for ``gradual``, how many unfreezing stages have passed (0 = head only).

    Raises:
        ValueError: unknown strategy, one that does not freeze by depth, or
            ``num_trainable_layers`` missing or out of 0..L.
    """
    return STRATEGIES.get(strategy).min_depth(
        num_blocks, num_trainable_layers=num_trainable_layers, stage=stage
    )


def apply_strategy(model, layer_map, strategy: str, *,
                   num_trainable_layers: int | None = None) -> int:  # fmt: skip
    """Freeze ``model`` as the registered ``strategy`` says (``gradual`` at stage 0); returns the
    lowest depth that trains."""
    return STRATEGIES.get(strategy).freeze_by_depth(
        model, layer_map, num_trainable_layers=num_trainable_layers
    )


__all__ = ["STRATEGIES", "Strategy", "apply_strategy", "min_trainable_depth"]
