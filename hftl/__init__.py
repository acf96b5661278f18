"""hftl: transfer learning on the Hugging Face stack; every strategy is a config switch."""

import logging as _logging
import os as _os

from hftl.config import ConfigError, ModelArguments, TransferTrainingArguments, parse_config
from hftl.freezing import STRATEGIES, apply_strategy, min_trainable_depth, set_trainable
from hftl.layers import LayerMap, LayerMapError, build_layer_map, layer_ids, num_blocks
from hftl.optim import format_groups, param_groups
from hftl.trainer import GradualUnfreezingCallback, TransferTrainer

__version__ = "0.1.0.dev0"


def _configure_library_logger() -> None:
    """hftl's own messages (group table, unfreezing) go to stderr at INFO unless told otherwise."""
    logger = _logging.getLogger("hftl")
    if logger.handlers:
        return
    handler = _logging.StreamHandler()
    handler.setFormatter(_logging.Formatter("[hftl] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(_os.environ.get("HFTL_VERBOSITY", "INFO").upper())
    logger.propagate = False


_configure_library_logger()

__all__ = [
    "STRATEGIES",
    "ConfigError",
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
