"""Loading a pretrained checkpoint (and its preprocessing) as a classifier for the task's labels."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from torch import nn
from transformers import AutoConfig

from hftl.assets import resolve
from hftl.errors import ConfigError, first_line
from hftl.families import family_for_type
from hftl.shapes import LabelSpec, shape_for_problem_type

logger = logging.getLogger(__name__)


def load_classifier(model_args, task, labels: LabelSpec | list[str], task_args=None) -> nn.Module:
    """The task's ``AutoModelFor...Classification`` with a new head for ``labels`` (a run's
    :class:`~hftl.shapes.LabelSpec`, or class names: single-label).

    ``task``: a :class:`~hftl.tasks.base.Task` or its registered name; ``task_args``: its
    options (default: their defaults), which may choose the head (the text task's pooling).

    The label names go into the config (``id2label`` / ``label2id``), so the saved model predicts
    names, not ``LABEL_0``, and so does the shape (``problem_type``: what ``pipeline()`` applies
    to the outputs). A pretrained head of another size is replaced (``ignore_mismatched_sizes``).
    """
    from hftl.tasks import task_of

    if not isinstance(labels, LabelSpec):
        labels = LabelSpec(shape=shape_for_problem_type(None), names=list(labels))
    path, config = read_config(model_args)
    labels.configure(config)
    common = hub_options(model_args)
    family_for_type(getattr(config, "model_type", None)).configure(config, labels.names)
    task = task_of(task)
    if getattr(model_args, "from_scratch", False):
        logger.info("from_scratch: %s architecture with random weights", config.model_type)
        with _as_config_error(model_args.model_name_or_path, path, "architecture"):
            return task.load_model(path, config, task_args, from_scratch=True, **common)[0]
    strict = not getattr(model_args, "ignore_mismatched_sizes", True)
    with _as_config_error(model_args.model_name_or_path, path, "weights"):
        try:
            model, loading = task.load_model(
                path, config, task_args, ignore_mismatched_sizes=not strict, **common
            )
        except RuntimeError as error:
            if not (strict and "ignore_mismatched_sizes" in str(error)):
                raise
            raise ConfigError(
                f"--model_name_or_path {model_args.model_name_or_path}: its weights do not all "
                f"fit the model for {labels.num_outputs} outputs (the head's size differs; train.log has "
                "the report) and --ignore_mismatched_sizes is false; set it to true for a new head"
            ) from None
    logger.info(describe_loading(model, loading, model_args.model_name_or_path))
    return model


def hub_options(model_args) -> dict:
    """The ``from_pretrained`` options every load of ``model_args``' checkpoint passes."""
    return {
        "revision": model_args.revision,
        "cache_dir": model_args.cache_dir,
        "trust_remote_code": model_args.trust_remote_code,
        "token": getattr(model_args, "token", None),
    }


def load_source_classifier(model_args, task, task_args=None) -> nn.Module | None:
    """The checkpoint as the classifier it was trained as (its *source* head: ImageNet's 1,000
    classes, a fine-tuned sentiment head), in eval mode; None where the checkpoint has no head of
    its own for the task's model (a bare encoder, a feature extractor), or under
    ``from_scratch``. ``hftl advise`` reads LEEP and NCE from it."""
    from hftl.layers import build_layer_map
    from hftl.tasks import task_of

    if getattr(model_args, "from_scratch", False):
        return None
    path, config = read_config(model_args)
    with _as_config_error(model_args.model_name_or_path, path, "weights"):
        model, loading = task_of(task).load_model(
            path, config, task_args, **hub_options(model_args)
        )
    layer_map = build_layer_map(model)
    head = set(layer_map.names_at(layer_map.head_depth))
    missing = set((loading or {}).get("missing_keys") or ())
    if (loading or {}).get("mismatched_keys") or head & missing:
        return None
    return model.eval()


def describe_loading(model: nn.Module, loading: dict, name: str) -> str:
    """One line on what the checkpoint gave the model (transformers' load report, which goes to
    train.log, in hftl's words), e.g. ``new 10-class head (classifier); the checkpoint's
    1000-class head dropped``. Weights outside the head missing from the checkpoint would start
    random: a one-line ``ConfigError`` instead."""
    from hftl.layers import build_layer_map

    layer_map = build_layer_map(model)
    missing = set(loading.get("missing_keys") or ())
    mismatched = {key: shapes for key, *shapes in loading.get("mismatched_keys") or ()}
    head = {n for n, depth in layer_map.depths.items() if depth == layer_map.head_depth}
    pooler = {key for key in missing - head if ".pooler." in f".{key}"}
    lost = sorted(missing - head - pooler)
    if lost:
        raise ConfigError(
            f"--model_name_or_path {name}: {len(lost)} weights of the model are not in the "
            f"checkpoint ({', '.join(lost[:3])}{', ...' if len(lost) > 3 else ''}) and would "
            "start random; give a checkpoint of this architecture (or --from_scratch true)"
        )
    num_labels = model.config.num_labels
    modules = sorted({key.rsplit(".", 1)[0] for key in (missing & head) | set(mismatched)})
    if mismatched:
        old = next(iter(mismatched.values()))[0]
        line = (
            f"new {num_labels}-class head ({', '.join(modules)}); the checkpoint's "
            f"{old[0]}-class head dropped"
        )
    elif missing & head:
        line = f"new {num_labels}-class head ({', '.join(modules)}); the checkpoint has none"
    else:
        line = f"the checkpoint's own {num_labels}-class head kept (it has the labels' size)"
    if pooler:
        line += f"; new pooler ({len(pooler)} tensors, random: not in the checkpoint)"
    unused = sorted(loading.get("unexpected_keys") or ())
    if unused:
        prefixes = sorted({".".join(key.split(".")[:2]) for key in unused})
        line += (
            f"; {len(unused)} checkpoint tensors unused ({', '.join(prefixes[:3])}"
            f"{', ...' if len(prefixes) > 3 else ''})"
        )
    return line


def load_processor(model_args, task):
    """The checkpoint's own preprocessing (the task's: image processor, tokenizer, ...), after
    checking that the checkpoint exists and is an architecture the task's ``AutoModelFor...``
    class builds (so a recipe calls it first, and a wrong model stops the run before the data is
    read)."""
    from hftl.tasks import task_of

    task = task_of(task)
    path, config = read_config(model_args)
    custom = model_args.trust_remote_code and getattr(config, "auto_map", None)
    if not task.builds(config.model_type) and not custom:
        raise ConfigError(
            f"--model_name_or_path {model_args.model_name_or_path}: a '{config.model_type}' "
            f"model, which {task.auto_model.__name__} cannot build; choose a checkpoint of an "
            "architecture it supports"
        )
    name = getattr(model_args, "processor_name", None)
    source = checked_model_path(name) if name else path
    with _as_config_error(name or model_args.model_name_or_path, source, task.processor_name):
        return task.load_processor(
            source,
            revision=model_args.revision,
            cache_dir=model_args.cache_dir,
            token=getattr(model_args, "token", None),
        )


def read_config(model_args, **overrides) -> tuple[str, object]:
    """(the checked local path or Hub id, the checkpoint's config with ``overrides``); a missing
    or unreadable checkpoint is a one-line ``ConfigError``. ``config_name`` (if set) gives the
    config instead of the checkpoint."""
    path = checked_model_path(model_args.model_name_or_path)
    config_name = getattr(model_args, "config_name", None)
    source = checked_model_path(config_name) if config_name else path
    with _as_config_error(config_name or model_args.model_name_or_path, source, "config"):
        config = AutoConfig.from_pretrained(
            source,
            revision=model_args.revision,
            cache_dir=model_args.cache_dir,
            trust_remote_code=model_args.trust_remote_code,
            token=getattr(model_args, "token", None),
            **overrides,
        )
    return path, config


def task_of_checkpoint(model_args):
    """The first registered task whose ``AutoModelFor...`` class builds the checkpoint."""
    from hftl.tasks import TASKS, task_for_model_type

    _, config = read_config(model_args)
    task = task_for_model_type(config.model_type)
    if task is None:
        raise ConfigError(
            f"--model_name_or_path {model_args.model_name_or_path}: a '{config.model_type}' "
            f"model, which no hftl task ({', '.join(TASKS.names())}) can build"
        )
    return task


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
