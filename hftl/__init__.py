"""hftl: transfer learning on the Hugging Face stack; every strategy is a config switch."""

import logging as _logging

from hftl.config import ConfigError, ModelArguments, TransferTrainingArguments, parse_config
from hftl.freezing import apply_strategy, min_trainable_depth, set_trainable
from hftl.guards import GUARDS
from hftl.layers import LayerMap, LayerMapError, build_layer_map, layer_ids, num_blocks
from hftl.optim import format_groups, param_groups
from hftl.strategies import STRATEGIES
from hftl.strategies.gradual import GradualUnfreezingCallback
from hftl.tasks import TASKS
from hftl.trainer import TransferTrainer

__version__ = "0.1.0.dev0"

# A library configures no logging: the programs (recipes, `hftl`) do, see hftl.logs.
_logging.getLogger("hftl").addHandler(_logging.NullHandler())

__all__ = [
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
    "format_groups",
    "layer_ids",
    "min_trainable_depth",
    "num_blocks",
    "param_groups",
    "parse_config",
    "set_trainable",
]
