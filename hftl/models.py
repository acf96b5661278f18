"""Loading a pretrained checkpoint as a classifier for the task's labels, and LoRA on top of it."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
)

from hftl.assets import resolve
from hftl.errors import ConfigError, first_line
from hftl.layers import build_layer_map

logger = logging.getLogger(__name__)

TASKS = {"image": AutoModelForImageClassification, "text": AutoModelForSequenceClassification}
# model types each Auto class can build (transformers' public name tables)
_SUPPORTED = {"image": MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
              "text": MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES}  # fmt: skip

# Attention projections LoRA adapts by default, by their names across transformers and timm.
_ATTENTION_NAMES = ("query", "value", "q_proj", "v_proj", "q_lin", "v_lin", "qkv", "in_proj")


def load_classifier(model_args, task: str, labels: list[str]) -> nn.Module:
    """``AutoModelFor{Image,Sequence}Classification`` with a new head for ``labels``.

    The label names go into the config (``id2label`` / ``label2id``), so the saved model predicts
    names, not ``LABEL_0``. A pretrained head of another size is replaced (``ignore_mismatched_sizes``).
    """
    common = {
        "revision": model_args.revision,
        "cache_dir": model_args.cache_dir,
        "trust_remote_code": model_args.trust_remote_code,
    }
    path = checked_model_path(model_args.model_name_or_path)
    with _as_config_error(model_args.model_name_or_path, path, "config"):
        config = AutoConfig.from_pretrained(
            path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            **common,
        )
    if getattr(config, "model_type", None) == "timm_wrapper":
        config.label_names = list(labels)
    auto = TASKS[task]
    if getattr(model_args, "from_scratch", False):
        logger.info("from_scratch: %s architecture with random weights", config.model_type)
        with _as_config_error(model_args.model_name_or_path, path, "architecture"):
            return auto.from_config(config, trust_remote_code=model_args.trust_remote_code)
    with _as_config_error(model_args.model_name_or_path, path, "weights"):
        return auto.from_pretrained(path, config=config, ignore_mismatched_sizes=True, **common)


def load_processor(model_args, task: str):
    """The checkpoint's image processor (images) or tokenizer (text), after checking that the
    checkpoint exists and is an architecture the task's ``AutoModelFor...`` class builds (so a
    recipe calls it first, and a wrong model stops the run before the data is read)."""
    common = {"revision": model_args.revision, "cache_dir": model_args.cache_dir}
    path = checked_model_path(model_args.model_name_or_path)
    with _as_config_error(model_args.model_name_or_path, path, "config"):
        config = AutoConfig.from_pretrained(
            path, trust_remote_code=model_args.trust_remote_code, **common
        )
    custom = model_args.trust_remote_code and getattr(config, "auto_map", None)
    if config.model_type not in _SUPPORTED[task] and not custom:
        raise ConfigError(
            f"--model_name_or_path {model_args.model_name_or_path}: a '{config.model_type}' "
            f"model, which {TASKS[task].__name__} cannot build; choose a checkpoint of an "
            "architecture it supports"
        )
    if task == "image":
        with _as_config_error(model_args.model_name_or_path, path, "image processor"):
            return AutoImageProcessor.from_pretrained(path, **common)
    with _as_config_error(model_args.model_name_or_path, path, "tokenizer"):
        return AutoTokenizer.from_pretrained(path, **common)


def _looks_local(value: str) -> bool:
    """A path the user meant as local (a Hub id is ``name`` or ``org/name``)."""
    return (
        value.startswith(("/", "./", "../", "~", "."))
        or value.endswith(("/", os.sep))
        or value.count("/") > 1
        or (os.sep != "/" and os.sep in value)
    )


def checked_model_path(value: str) -> str:
    """``--model_name_or_path`` resolved (``hftl:`` assets fetched) and checked where it is local:
    a missing directory, a file, or a directory without ``config.json`` is a one-line error
    (instead of transformers' message about Hub repo ids). Hub ids pass through unchanged."""
    path = resolve(value)
    local = Path(path).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ConfigError(
                f"--model_name_or_path {value}: a file; give the directory that holds config.json"
            )
        if not (local / "config.json").is_file():
            raise ConfigError(
                f"--model_name_or_path {value}: no config.json in this directory; give a directory "
                "written by save_pretrained, or a Hub model id"
            )
        return str(local)
    if _looks_local(path):
        raise ConfigError(f"--model_name_or_path {value}: no such directory")
    return path


@contextlib.contextmanager
def _as_config_error(value: str, path: str, what: str):
    """Failures to load ``what`` for model ``value`` (resolved to ``path``) become one line
    naming the model and the way out."""
    try:
        yield
    except ConfigError:
        raise
    except (OSError, ValueError) as error:
        hint = (
            "check the files in that directory"
            if Path(path).is_dir()
            else "check the model id, the network (HF_HUB_OFFLINE), and HF_TOKEN for a private "
            "or gated model"
        )
        raise ConfigError(
            f"--model_name_or_path {value}: cannot load its {what} ({first_line(error)}); {hint}"
        ) from error


def head_module_names(model: nn.Module) -> list[str]:
    """Names of the modules that own the head's parameters (for PEFT's ``modules_to_save``)."""
    layer_map = build_layer_map(model)
    head = set(layer_map.names_at(layer_map.head_depth))
    owners = set()
    for name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            if (f"{name}.{param_name}" if name else param_name) in head:
                owners.add(name)
    return sorted(owners)


def default_lora_targets(model: nn.Module) -> list[str]:
    """LoRA targets inside the blocks: attention query/value projections where the model has
    them, else every Linear layer, else (CNNs) every ungrouped Conv2d layer."""
    layer_map = build_layer_map(model)
    in_blocks = {n for n, d in layer_map.depths.items() if 1 <= d <= layer_map.num_blocks}
    candidates: dict[type, list[str]] = {nn.Linear: [], nn.Conv2d: []}
    for name, module in model.named_modules():
        kind = type(module) if type(module) in candidates else None
        if kind is nn.Conv2d and module.groups > 1:
            continue  # depthwise / grouped: PEFT's LoRA needs the rank divisible by the groups
        if kind is not None and f"{name}.weight" in in_blocks:
            candidates[kind].append(name)
    attention = [n for n in candidates[nn.Linear] if n.rsplit(".", 1)[-1] in _ATTENTION_NAMES]
    targets = attention or candidates[nn.Linear] or candidates[nn.Conv2d]
    if not targets:
        raise ValueError(
            f"found no Linear or Conv2d layer in the blocks of {type(model).__name__}; set lora_target_modules"
        )
    return targets


def wrap_with_lora(model: nn.Module, args) -> nn.Module:
    """A ``PeftModel``: LoRA on ``args.lora_target_modules`` (default: :func:`default_lora_targets`),
    the new head trained in full and saved with the adapter (``modules_to_save``)."""
    from peft import LoraConfig, get_peft_model

    targets = args.lora_target_modules or default_lora_targets(model)
    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=targets,
        modules_to_save=head_module_names(model),
    )
    peft_model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    logger.info(
        "LoRA r=%d on %d modules; %s of %s parameters train",
        args.lora_r,
        len(targets),
        f"{trainable:,}",
        f"{total:,}",
    )
    return peft_model
