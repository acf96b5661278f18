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

__all__ = ["STRATEGIES", "Strategy"]
