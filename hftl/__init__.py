"""hftl: transfer learning on the Hugging Face stack; every strategy is a config switch."""

import logging as _logging

from hftl.config import ConfigError, ModelArguments, TransferTrainingArguments, parse_config
from hftl.families import FAMILIES, family_of
from hftl.freezing import set_trainable
from hftl.guards import GUARDS
from hftl.layers import LayerMap, LayerMapError, build_layer_map, layer_ids, num_blocks
from hftl.optim import format_groups, param_groups
from hftl.strategies import STRATEGIES, apply_strategy, min_trainable_depth
from hftl.strategies.gradual import GradualUnfreezingCallback
from hftl.tasks import TASKS
from hftl.trainer import TransferTrainer
from hftl.version import __version__

# A library configures no logging: the programs (recipes, `hftl`) do, see hftl.logs.
_logging.getLogger("hftl").addHandler(_logging.NullHandler())

__all__ = [
    "FAMILIES",
    "STRATEGIES",
    "TASKS",
    "ConfigError",
    "GUARDS",
    "GradualUnfreezingCallback",
    "LayerMap",
    "LayerMapError",
    "ModelArguments",
    "TransferTrainer",
    "TransferTrainingArguments",
    "apply_strategy",
    "build_layer_map",
    "family_of",
    "format_groups",
    "layer_ids",
    "min_trainable_depth",
    "num_blocks",
    "param_groups",
    "parse_config",
    "set_trainable",
    "__version__",
]
