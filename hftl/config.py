"""Configuration: dataclasses parsed by ``HfArgumentParser`` from a YAML file and the command line.

``--config run.yaml`` supplies values, flags on the command line override them, and a key in the
YAML that no dataclass knows is an error naming the key. The fine-tuning options live in
:class:`TransferTrainingArguments`, a ``transformers.TrainingArguments`` with the transfer-learning
fields added, so one flat YAML (or one set of flags) configures a run.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser, TrainingArguments

from hftl.errors import ConfigError, one_line
from hftl.guards import GUARDS
from hftl.strategies import STRATEGIES

ALL_STRATEGIES = STRATEGIES.names()

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    """Which pretrained model to start from."""

    model_name_or_path: str = field(
        metadata={
            "help": "Hub model id (e.g. google/vit-base-patch16-224-in21k), local directory, "
            "or an offline hftl asset (hftl:minilm, hftl:efficientnet-lite0)."
        }
    )
    revision: str = field(
        default="main",
        metadata={"help": "Branch, tag or commit of the model (--model_revision does the same)."},
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Config to use instead of the model's own (id or path)."}
    )
    processor_name: str | None = field(
        default=None,
        metadata={
            "help": "Preprocessing (image processor, tokenizer) to use instead of the model's own "
            "(id or path); --image_processor_name / --tokenizer_name do the same."
        },
    )
    token: str | None = field(
        default=None,
        metadata={
            "help": "Hub token for private or gated models and datasets (default: HF_TOKEN)."
        },
    )
    ignore_mismatched_sizes: bool = field(
        default=True,
        metadata={
            "help": "Replace a pretrained head whose size differs from the labels' (hftl's "
            "default: a new head is the point of transfer); false: such a checkpoint is an error."
        },
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where downloaded models are cached."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom modelling code."}
    )
    from_scratch: bool = field(
        default=False,
        metadata={"help": "Same architecture, random weights: the baseline transfer must beat."},
    )


_OPTION_CLASSES = (*STRATEGIES.argument_classes(), *GUARDS.argument_classes())


@dataclass
class TransferTrainingArguments(TrainingArguments, *_OPTION_CLASSES):
    """``TrainingArguments`` plus the transfer-learning options.

    The fields added here:
        strategy: a registered strategy (:mod:`hftl.strategies`): ``feature_extraction`` (head
            only), ``partial`` (top ``num_trainable_layers`` blocks + head), ``full``
            (everything), ``gradual`` (head first, then one more block every ``unfreeze_every``
            ``unfreeze_unit``\\ s, top-down), ``lora`` (PEFT LoRA adapters + the full head).
        layer_decay: layer-wise LR decay; depth ``d`` trains at ``lr * layer_decay ** (L + 1 - d)``.
        head_lr_multiplier: the new head trains at ``learning_rate * head_lr_multiplier``.
        channels_last, overwrite_output_dir: see their help.

    Each strategy and each guard (:mod:`hftl.guards`) brings its own fields (``lora_r``,
    ``unfreeze_every``, ``early_stopping_patience``, ...) from its module, and checks them.
    """

    strategy: str = field(
        default="full",
        metadata={
            "help": "Transfer strategy: "
            + "; ".join(f"{s.name} ({s.summary})" for s in STRATEGIES),
            "choices": list(STRATEGIES.names()),
        },
    )
    layer_decay: float = field(
        default=1.0,
        metadata={
            "help": "Layer-wise LR decay in (0, 1]: each block down trains at this factor "
            "times the LR of the block above. 1.0 = off."
        },
    )
    head_lr_multiplier: float = field(
        default=1.0, metadata={"help": "The head trains at learning_rate times this."}
    )
    guards: list[str] | None = field(
        default=None,
        metadata={
            "help": "Forgetting guards to turn on by name, each with its own options: "
            + "; ".join(f"{g.name} ({g.summary})" for g in GUARDS if g.switched_by_name)
            + ". early_stopping is turned on by --early_stopping_patience."
        },
    )
    layer_grouping: str = field(
        default="coarse",
        metadata={
            "help": "timm models: what a depth is. coarse = one per stage of a CNN (timm's "
            "group_matcher(coarse=True)); fine = one per block of a stage, the grouping timm's own "
            "--layer-decay uses, so a layer_decay tuned in timm means the same schedule here. "
            "Other models have one grouping.",
            "choices": ["coarse", "fine"],
        },
    )
    channels_last: bool | None = field(
        default=None,
        metadata={
            "help": "Lay out conv weights and pixel_values channels-last (NHWC). Unset: on for "
            "CNNs with batch norm (EfficientNet, ResNet: faster), off otherwise (ViT, ConvNeXt)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace a finished run in output_dir, and remove its checkpoints instead of "
            "resuming from them (as in the Hugging Face example scripts)."
        },
    )

    def __post_init__(self):
        _check_ranges(self, _TRAINING_RANGES)
        for entry in (*STRATEGIES, *GUARDS):
            _check_ranges(self, entry.ranges)
        if self.num_train_epochs <= 0 and self.max_steps <= 0 and not self.linear_probe:
            raise ValueError(
                f"--num_train_epochs {self.num_train_epochs}: must be > 0 (or set --max_steps > 0)"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(STRATEGIES.unknown(self.strategy))
        if not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1] (1.0 = off), got {self.layer_decay}")
        if self.head_lr_multiplier <= 0:
            raise ValueError(f"head_lr_multiplier must be > 0, got {self.head_lr_multiplier}")
        for strategy in STRATEGIES:
            strategy.check(self, selected=strategy.name == self.strategy)
        for name in self.guards or []:
            if name not in GUARDS:
                raise ValueError(f"--guards {name}: {GUARDS.unknown(name)}")
            guard = GUARDS.get(name)
            if not guard.switched_by_name:
                raise ValueError(
                    f"--guards {name}: turned on by its own option, not by name (see --help)"
                )
            if guard.needs_moving_weights and not self.strategy_object.moves_pretrained_weights:
                raise ValueError(
                    f"guards [{name}] with strategy {self.strategy}: the pretrained weights do not "
                    "change under it, so the guard has nothing to act on; use full, partial, "
                    "gradual or lp_ft"
                )
        for guard in GUARDS:
            guard.check(self)
        super().__post_init__()

    def __getstate__(self):
        # Trainer pickles its arguments into training_args.bin next to every saved model; a
        # --hub_token must not travel with them (into checkpoints, onto the Hub, to a colleague).
        state = dict(self.__dict__)
        state["hub_token"] = None
        return state

    @property
    def strategy_object(self):
        """The registered :class:`~hftl.strategies.base.Strategy` named by ``strategy``."""
        return STRATEGIES.get(self.strategy)


# Numeric options whose nonsense values transformers would only trip over later (a DataLoader
# error, a silent no-op): (minimum, whether the minimum itself is allowed). A strategy lists its
# own options' minimums in its ``ranges``.
_TRAINING_RANGES = {
    "per_device_train_batch_size": (1, True),
    "per_device_eval_batch_size": (1, True),
    "gradient_accumulation_steps": (1, True),
    "learning_rate": (0, True),
    "weight_decay": (0, True),
    "max_grad_norm": (0, True),
    "warmup_steps": (0, True),
    "logging_steps": (0, False),
    "eval_steps": (0, False),
    "save_steps": (0, False),
    "save_total_limit": (1, True),
    "dataloader_num_workers": (0, True),
}


def _check_ranges(arguments, ranges: dict) -> None:
    """Refuse a value out of its range, naming the flag: ``--per_device_train_batch_size 0: must
    be >= 1``. A range is ``(minimum, whether the minimum itself is allowed)`` or, bounded on both
    sides, ``(minimum, maximum)`` with both allowed (``--wise_ft_alpha 1.5: must be in [0, 1]``).
    Each value of a list is checked; unset (None) values are left alone."""
    for name, bounds in ranges.items():
        value = getattr(arguments, name, None)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is None or isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            low, second = bounds
            if isinstance(second, bool):  # (minimum, inclusive)
                if item < low or (item == low and not second):
                    raise ValueError(f"--{name} {item}: must be {'>=' if second else '>'} {low}")
            elif not low <= item <= second:
                raise ValueError(f"--{name} {item}: must be in [{low:g}, {second:g}]")


# --------------------------------------------------------------------------------------------
# Parsing: YAML + command line
# --------------------------------------------------------------------------------------------


class _RaisingParser(HfArgumentParser):
    def add_argument(self, *args, **kwargs):
        from transformers.hf_argparser import string_to_bool

        # HfArgumentParser lets a bare --flag mean true for `bool` fields but not for
        # `bool | None` ones (None: "decide for me", e.g. --augmentation): the same for both
        if kwargs.get("type") is string_to_bool and "nargs" not in kwargs:
            kwargs.update(nargs="?", const=True)
        return super().add_argument(*args, **kwargs)

    def error(self, message):  # argparse would print usage and exit; we want one clear line
        raise ConfigError(message)


def launch_precision() -> dict:
    """``--bf16`` / ``--fp16`` as ``accelerate launch`` trains: a config's ``mixed_precision``
    reaches the process as ACCELERATE_MIXED_PRECISION, and the Accelerator trains in it whatever
    ``--bf16`` says, while DeepSpeed refuses TrainingArguments that disagree with it ("ds
    bf16.enabled=True vs hf bf16=False"). A default only: the YAML and the command line decide."""
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    return {launched: True} if launched in ("bf16", "fp16") else {}


def parse_config(
    dataclass_types: Sequence[type],
    args: Sequence[str] | None = None,
    *,
    prog: str | None = None,
    defaults: dict | None = None,
) -> tuple:
    """Parse ``dataclass_types`` from ``--config file.yaml`` and command-line flags.

    Values from the YAML file come first; flags on the command line override them. A YAML file
    may also be given as the first positional argument (as in the Hugging Face examples).

    Args:
        dataclass_types: the dataclasses to fill, e.g. ``(ModelArguments, TransferTrainingArguments)``.
        args: the command line without the program name (default ``sys.argv[1:]``).
        defaults: a recipe's own defaults for fields of ``dataclass_types``; the YAML file and
            the command line override them.

    Returns:
        One instance per dataclass type, in order.

    Raises:
        ConfigError: unknown YAML key (named, with a suggestion), a value of the wrong type, or an
            invalid combination; the message is a single line.
    """
    argv = list(sys.argv[1:] if args is None else args)
    if any(issubclass(kind, TrainingArguments) for kind in dataclass_types):
        defaults = {**launch_precision(), **(defaults or {})}
    config_path, argv = _pop_config_path(argv)
    parser = _RaisingParser(dataclass_types, prog=prog)
    if defaults:
        parser.set_defaults(**defaults)
    yaml_argv: list[str] = []
    if config_path is not None:
        yaml_argv = _yaml_to_argv(config_path, dataclass_types, parser)
    try:
        parsed = parser.parse_args_into_dataclasses(args=yaml_argv + argv, look_for_args_file=False)
    except ConfigError as error:
        raise ConfigError(f"command line: {error}") from None
    except ValueError as error:  # __post_init__ checks
        where = f"{config_path} + command line" if config_path else "command line"
        raise ConfigError(f"{where}: {one_line(error)}") from None
    _check_against_model(parsed)
    return tuple(parsed)


def _pop_config_path(argv: list[str]) -> tuple[Path | None, list[str]]:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    if known.config is None and rest and rest[0].endswith((".yaml", ".yml")):
        known.config, rest = rest[0], rest[1:]
    return (config_file(known.config) if known.config else None), rest


# The YAML files of recipes/ install inside hftl as these folders (pyproject.toml: package data,
# no __init__.py, which in recipes/accelerate/ would shadow the accelerate library for the recipe
# scripts), so an installed hftl runs the configs the README names: `--config vit_base_lora` or
# `--config recipes/configs/vit_base_lora.yaml` from any directory. In a checkout they are read
# where they are.
RECIPE_CONFIGS = "hftl.recipe_configs"  # recipes/configs/: a run's options
ACCELERATE_CONFIGS = "hftl.accelerate_configs"  # recipes/accelerate/: accelerate launch topology
_CHECKOUT_FOLDERS = {RECIPE_CONFIGS: "recipes/configs", ACCELERATE_CONFIGS: "recipes/accelerate"}


def config_folder(package: str = RECIPE_CONFIGS) -> Path:
    """Where the YAML configs of ``package`` are: inside the installed hftl, or in the checkout."""
    here = Path(__file__).resolve().parent
    for folder in (here / package.rpartition(".")[2], here.parent / _CHECKOUT_FOLDERS[package]):
        if folder.is_dir():
            return folder
    raise ConfigError(f"hftl's {_CHECKOUT_FOLDERS[package]} are not installed; reinstall hftl")


def shipped_configs(package: str = RECIPE_CONFIGS) -> dict[str, Path]:
    """{name: path} of the YAML configs installed with hftl (``package``: :data:`RECIPE_CONFIGS`
    or :data:`ACCELERATE_CONFIGS`), by file name without ``.yaml``."""
    return {path.stem: path for path in sorted(config_folder(package).glob("*.yaml"))}


def config_file(value: str, package: str = RECIPE_CONFIGS, flag: str = "--config") -> Path:
    """The YAML file ``value`` names: a file that exists, else one of hftl's own configs named
    by itself (``vit_base_lora``, ``vit_base_lora.yaml``) or by its place in the repository
    (``recipes/configs/vit_base_lora.yaml``), so that the README's commands run outside the
    checkout too; anything else is a one-line error listing hftl's configs."""
    path = Path(value).expanduser()
    if path.is_file():
        return path
    shipped = shipped_configs(package)
    name = path.name.removesuffix(".yaml").removesuffix(".yml")
    parent = path.parent.as_posix()
    home = _CHECKOUT_FOLDERS[package]
    if name in shipped and (parent == "." or parent == home or parent.endswith("/" + home)):
        logger.info("%s %s: using hftl's own %s", flag, value, shipped[name])
        return shipped[name]
    raise ConfigError(
        f"{flag} {value}: no such file; give a YAML file, or one of hftl's own configs by name "
        f"({', '.join(shipped)}; `hftl configs` lists them)"
    )


def _yaml_to_argv(path: Path, dataclass_types: Sequence[type], parser: _RaisingParser) -> list[str]:
    """Turn the YAML mapping into flags, so argparse types, choices and bools apply to it too."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {one_line(error)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    known = {f.name for cls in dataclass_types for f in fields(cls) if f.init}
    checker = _RaisingParser(dataclass_types)  # checks one key at a time: nothing is required
    for action in checker._actions:
        action.required = False
    argv: list[str] = []
    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{path}: unknown key '{key}'{hint}; remove it or fix its name")
        if value is None:
            parser.set_defaults(**{key: None})
            continue
        flag = [f"--{key}", *_as_tokens(value)]
        try:  # check this key alone, so a bad value is reported against the file and key
            checker.parse_known_args(flag)
        except ConfigError as error:
            raise ConfigError(f"{path}: key '{key}': {error}") from None
        argv += flag
    return argv


def _as_tokens(value: Any) -> list[str]:
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, dict):
        return [json.dumps(value)]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def _check_against_model(parsed: Sequence[Any]) -> None:
    """Check num_trainable_layers against the model's real depth, if its config is reachable."""
    model_args = next((p for p in parsed if hasattr(p, "model_name_or_path")), None)
    train_args = next((p for p in parsed if isinstance(p, TransferTrainingArguments)), None)
    if model_args is None or not model_args.model_name_or_path or train_args is None:
        return
    strategy = STRATEGIES.get(train_args.strategy)
    if not strategy.needs_block_count:
        return
    revision = getattr(model_args, "revision", "main")
    blocks = count_blocks_from_config(
        model_args.model_name_or_path, grouping=train_args.layer_grouping, revision=revision
    )
    if blocks is not None:
        try:
            strategy.check_blocks(train_args, blocks, model_args.model_name_or_path)
        except ValueError as error:
            raise ConfigError(str(error)) from None


def count_blocks_from_config(
    model_name_or_path: str, grouping: str = "coarse", **config_kwargs
) -> int | None:
    """L for a checkpoint, from its config alone (weights are not loaded: meta device).

    Returns None where the config cannot be read (e.g. offline with a Hub id); the check then
    happens again when the model is loaded.
    """
    import torch
    from transformers import AutoConfig, AutoModel

    from hftl.layers import build_layer_map

    try:
        config = AutoConfig.from_pretrained(model_name_or_path, **config_kwargs)
        with torch.device("meta"):
            model = AutoModel.from_config(config)
        return build_layer_map(model, grouping=grouping).num_blocks
    except Exception as error:  # noqa: BLE001 - any failure just defers the check
        logger.debug("could not count blocks of %s from its config: %s", model_name_or_path, error)
        return None
