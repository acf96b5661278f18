"""Checkpoints: weights come back exactly, and a half-written checkpoint is never read back.

Two guarantees, each with one home here:

* **Exact loading.** transformers 5 saves some architectures (ViT, DeiT, Swin, ...) under other
  tensor names than they have in memory, and ``Trainer`` reads checkpoints back (on resume and for
  ``load_best_model_at_end``) with a non-strict ``load_state_dict`` that skips that renaming, so the
  renamed tensors silently keep their in-memory values. :func:`read_weights` reads a checkpoint
  the way ``from_pretrained`` does (PEFT adapters the way PEFT does) and refuses, naming the
  tensors, anything that does not match the model exactly. :class:`CheckpointCallback` applies
  it after ``Trainer``'s own loads, so the weights that train on (resume) and the weights that are
  saved (best model) are the checkpoint's.
* **Complete or ignored.** A checkpoint is complete once :func:`mark_complete` has written
  ``hftl_checkpoint.json`` into it (atomically, after every process's files are on disk, listing
  each file and its size). A checkpoint without it was being written when the run stopped: it is
  skipped with a log line and never resumed from.
The output directory's rules (refuse a finished run, resume, replace) are
:mod:`hftl.output_dir`'s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

from accelerate import PartialState
from transformers import TrainerCallback

from hftl.errors import ConfigError, first_line, shown
from hftl.feature_cache import unwrap
from hftl.run_files import MODEL_FILES
from hftl.storage import atomic_write_text, fsync_dir

logger = logging.getLogger(__name__)

CHECKPOINT_MARKER = "hftl_checkpoint.json"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(ConfigError):
    """A checkpoint that is incomplete, missing, or does not match the model."""


def checkpoint_step(path: Path) -> int | None:
    match = _CHECKPOINT_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_checkpoints(output_dir) -> list[Path]:
    """``checkpoint-N`` folders in ``output_dir``, by step (complete or not)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def mark_complete(path: Path, step: int) -> None:
    """Record that checkpoint ``path`` is complete: every file flushed to disk, then the marker
    (the file list with sizes) written atomically. Call it once all processes have written."""
    path = Path(path)
    files = {}
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name != CHECKPOINT_MARKER):
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
        files[file.relative_to(path).as_posix()] = file.stat().st_size
    fsync_dir(path)
    atomic_write_text(
        path / CHECKPOINT_MARKER, json.dumps({"global_step": step, "files": files}, indent=1)
    )


def unmark(path: Path) -> None:
    """Make ``path`` incomplete again (before it is rewritten)."""
    marker = Path(path) / CHECKPOINT_MARKER
    if marker.exists():
        marker.unlink()
        fsync_dir(Path(path))


def checkpoint_problem(path) -> str | None:
    """None if ``path`` is a complete checkpoint; otherwise what is wrong with it, in words."""
    path = Path(path)
    if not path.is_dir():
        return "no such directory"
    marker = path / CHECKPOINT_MARKER
    if not marker.is_file():
        return f"no {CHECKPOINT_MARKER}: it was still being written when the run stopped"
    try:
        files = json.loads(marker.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{CHECKPOINT_MARKER} is unreadable"
    for name, size in files.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, {size} were written"
    return None


def last_complete_checkpoint(output_dir, *, log: bool = True) -> Path | None:
    """The complete checkpoint with the highest step in ``output_dir``; incomplete ones above it
    are skipped, each with a log line."""
    for path in reversed(list_checkpoints(output_dir)):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        if log:
            logger.warning("skipping incomplete checkpoint %s (%s)", path, problem)
    return None


def _written_without_hftl(path: Path) -> bool:
    """A checkpoint saved by plain transformers (no marker) whose trainer_state.json, written
    after the model, optimizer and RNG files, is complete."""
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return any((path / name).is_file() for name in MODEL_FILES)


def resolve_resume(resume_from_checkpoint, output_dir) -> Path | None:
    """The checkpoint to resume from: ``True`` (or "true") means the last complete one in
    ``output_dir``; a path must be a complete checkpoint. None stays None.

    Raises:
        CheckpointError: nothing to resume from, or the checkpoint is incomplete.
    """
    if resume_from_checkpoint in (None, False, "", "false", "False"):
        return None
    if resume_from_checkpoint in (True, "true", "True"):
        last = last_complete_checkpoint(output_dir)
        if last is None:
            raise CheckpointError(
                f"--resume_from_checkpoint true: no complete checkpoint in {output_dir}; "
                "start without it"
            )
        return last
    path = Path(resume_from_checkpoint)
    problem = checkpoint_problem(path)
    if problem is None:
        return path
    if path.is_dir() and not (path / CHECKPOINT_MARKER).exists() and _written_without_hftl(path):
        logger.info("%s has no %s; its trainer_state.json is complete", path, CHECKPOINT_MARKER)
        return path
    hint = ""
    last = last_complete_checkpoint(path.parent, log=False) if path.parent.is_dir() else None
    if last is not None and last != path:
        hint = f" (the last complete one there is {last})"
    raise CheckpointError(
        f"--resume_from_checkpoint {path}: not a complete checkpoint ({problem}); "
        f"choose another{hint}"
    )


# --------------------------------------------------------------------------------------------
# Reading weights the way from_pretrained does, exactly
# --------------------------------------------------------------------------------------------


def _differences(where: Path, expected: dict, found: dict) -> str | None:
    """Missing / unexpected / mismatched tensor names between two {name: shape} maps."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(
        n for n in set(expected) & set(found) if tuple(expected[n]) != tuple(found[n])
    )
    parts = [
        f"{len(names)} {label} ({shown(names)})"
        for label, names in (("missing", missing), ("unexpected", unexpected))
        if names
    ]
    if mismatched:
        name = mismatched[0]
        parts.append(
            f"{len(mismatched)} of another shape ({name}: {tuple(found[name])} in the "
            f"checkpoint, {tuple(expected[name])} in the model)"
        )
    if not parts:
        return None
    return f"{where} does not match the model: " + "; ".join(parts)


def read_weights(model, checkpoint) -> tuple[str, dict]:
    """Read ``checkpoint``'s weights for ``model`` as ``from_pretrained`` would, and check that
    they cover the model exactly (every tensor, no extra one, the same shapes).

    ``model`` may be a ``PreTrainedModel`` (TimmWrapper included), a PEFT model (its adapter and
    ``modules_to_save``), a plain ``nn.Module`` saved by ``Trainer`` as a state dict, or hftl's
    cached-feature wrapper of any of them.

    Returns:
        ``(kind, state)`` for :func:`apply_weights`.

    Raises:
        CheckpointError: no weights there, unreadable, or not an exact match (tensors named).
    """
    from transformers import PreTrainedModel

    path = Path(checkpoint)
    target = unwrap(model)
    if hasattr(target, "peft_config"):
        return "peft", _read_adapter(target, path)
    if not any((path / name).is_file() for name in MODEL_FILES):
        raise CheckpointError(f"{path}: no model weights ({MODEL_FILES[0]}) in this checkpoint")
    expected = {name: tuple(t.shape) for name, t in target.state_dict().items()}
    if isinstance(target, PreTrainedModel):
        try:
            with _quiet_transformers():  # hftl reports what does not match, below
                loaded, info = type(target).from_pretrained(
                    path, config=target.config, output_loading_info=True,
                    ignore_mismatched_sizes=True,
                )  # fmt: skip
        except (OSError, RuntimeError, ValueError) as error:
            raise CheckpointError(f"{path}: cannot be read ({first_line(error)})") from None
        # the checkpoint's tensors, in-memory names, as from_pretrained matched them
        found = dict(expected)
        for name in info.get("missing_keys") or ():
            found.pop(name, None)
        for name in info.get("unexpected_keys") or ():
            found[name] = ()
        for name, checkpoint_shape, _ in info.get("mismatched_keys") or ():
            found[name] = tuple(checkpoint_shape)
        problem = _differences(path, expected, found)
        if problem or info.get("error_msgs"):
            raise CheckpointError(problem or f"{path}: {first_line(info['error_msgs'][0])}")
        return "state", loaded.state_dict()  # the same architecture: the same names and shapes
    state = _read_state_dict_files(path)
    problem = _differences(path, expected, {name: tuple(t.shape) for name, t in state.items()})
    if problem:
        raise CheckpointError(problem)
    return "state", state


@contextlib.contextmanager
def _quiet_transformers():
    """No progress bar and no load report while hftl reads a checkpoint (it reports itself)."""
    from transformers.utils import logging as hf_logging

    bar, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def _read_state_dict_files(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        if (path / "model.safetensors").is_file():
            return load_file(path / "model.safetensors")
        if (path / "model.safetensors.index.json").is_file():
            index = json.loads((path / "model.safetensors.index.json").read_text())
            state = {}
            for shard in sorted(set(index["weight_map"].values())):
                state.update(load_file(path / shard))
            return state
        import torch

        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same user problem
        raise CheckpointError(f"{path}: cannot be read ({first_line(error)})") from None


def _read_adapter(model, path: Path) -> dict:
    from peft.utils import get_peft_model_state_dict, load_peft_weights

    if not any(
        (path / name).is_file() for name in ("adapter_model.safetensors", "adapter_model.bin")
    ):
        raise CheckpointError(
            f"{path}: no adapter weights (adapter_model.safetensors) in this checkpoint"
        )
    try:
        state = load_peft_weights(str(path), device="cpu")
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot be read ({first_line(error)})") from None
    expected = {n: tuple(t.shape) for n, t in get_peft_model_state_dict(model).items()}
    problem = _differences(path, expected, {n: tuple(t.shape) for n, t in state.items()})
    if problem:
        raise CheckpointError(problem)
    return state


def apply_weights(model, weights: tuple[str, dict]) -> None:
    """Copy weights from :func:`read_weights` into ``model`` in place (same Parameter objects,
    so an optimizer and a DDP wrapper keep pointing at them)."""
    kind, state = weights
    target = unwrap(model)
    if kind == "peft":
        from peft.utils import set_peft_model_state_dict

        result = set_peft_model_state_dict(target, state)
        if result.unexpected_keys:  # read_weights matched the names: this would be a PEFT change
            raise CheckpointError(
                f"PEFT did not place {len(result.unexpected_keys)} adapter tensors "
                f"({shown(result.unexpected_keys)})"
            )
        return
    target.load_state_dict(state, strict=True)


def load_weights(model, checkpoint) -> None:
    """:func:`read_weights` then :func:`apply_weights`."""
    apply_weights(model, read_weights(model, checkpoint))


# Trainer's own non-strict loads report the renamed tensors as missing / unexpected; hftl loads
# the checkpoint again, exactly, right after, so those lines would only mislead.
_TRAINER_LOAD_WARNINGS = (
    "There were missing keys in the checkpoint model loaded",
    "There were unexpected keys in the checkpoint model loaded",
)


class _DropTrainerLoadWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_TRAINER_LOAD_WARNINGS)


class CheckpointCallback(TrainerCallback):
    """Marks checkpoints complete, and loads them back exactly (resume and best model).

    ``TransferTrainer`` adds it to every run. ``pending`` holds the weights read (and checked) by
    :meth:`TransferTrainer.train` before training; they are applied in ``on_train_begin``, after
    Trainer's own load. ``on_train_end`` loads the best checkpoint under
    ``load_best_model_at_end``. With FSDP or DeepSpeed, whose checkpoints Trainer reads its own way,
    only the marking is done.

    Attributes:
        written: the checkpoint folders this trainer completed (resolved paths).
    """

    def __init__(self, exact_loading: bool = True):
        self.exact_loading = exact_loading
        self.pending: tuple[Path, tuple[str, dict]] | None = None
        self.written: set[Path] = set()
        self.filter = _DropTrainerLoadWarnings()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.pending is None:
            return
        path, weights = self.pending
        self.pending = None
        apply_weights(model, weights)
        if state.is_world_process_zero:
            logger.info(
                "resumed from %s at step %d (weights read exactly)", path, state.global_step
            )

    def on_save(self, args, state, control, **kwargs):
        PartialState().wait_for_everyone()  # every process's files (rng_state_N.pth) are written
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if args.should_save and path.is_dir():
            mark_complete(path, state.global_step)
            self.written.add(path.resolve())
        PartialState().wait_for_everyone()

    def on_train_end(self, args, state, control, model=None, **kwargs):
        best = state.best_model_checkpoint
        if not (self.exact_loading and args.load_best_model_at_end and best):
            return
        load_weights(model, best)
        if state.is_world_process_zero:
            logger.info(
                "best model: %s (%s = %s), loaded exactly",
                best,
                args.metric_for_best_model or "loss",
                state.best_metric,
            )


def remove_checkpoints(args, checkpoints: list[Path], also: tuple[Path, ...] = ()) -> None:
    """--overwrite_output_dir: the main process removes an earlier run's checkpoints (and the
    files ``also``), once every process has looked at the directory."""
    PartialState().wait_for_everyone()
    if args.should_save:
        for path in checkpoints:
            shutil.rmtree(path)
        for path in also:
            if path.exists():
                path.unlink()
        if checkpoints:
            logger.info("--overwrite_output_dir: removed %d earlier checkpoints", len(checkpoints))
    PartialState().wait_for_everyone()


def _global_step(checkpoint: Path) -> int:
    """The step a checkpoint was saved at (its trainer_state.json; else its folder name)."""
    try:
        return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        step = checkpoint_step(checkpoint)
        return 0 if step is None else step


def start_checkpoints(args, resume: Path | None, written: set[Path]) -> None:
    """Before training: make the checkpoints in ``args.output_dir`` consistent with where this
    run starts (``resume``, or step 0), so that none of an earlier run is taken for this one's.

    * resuming at step S: checkpoints above S are marked incomplete (they will be rewritten);
    * starting at step 0: complete checkpoints of an earlier run are an error, unless
      ``overwrite_output_dir`` (then they are removed).

    ``written`` (this trainer's own, from an earlier ``train()`` call) do not count.
    """
    output = Path(args.output_dir)
    checkpoints = [p for p in list_checkpoints(output) if p.resolve() not in written]
    if not checkpoints:
        return
    if resume is not None:
        step = _global_step(resume)
        later = [p for p in checkpoints if checkpoint_step(p) > step]
        if args.should_save:
            for path in later:
                unmark(path)
        if later:
            logger.info(
                "%d checkpoints after step %s in %s are from an earlier run and will be rewritten",
                len(later),
                step,
                output,
            )
        PartialState().wait_for_everyone()
        return
    complete = [p for p in checkpoints if checkpoint_problem(p) is None]
    if not complete:
        return  # half-written leftovers: skipped, and rewritten if this run gets there
    if not getattr(args, "overwrite_output_dir", False):
        raise ConfigError(
            f"--output_dir {output} holds checkpoints of an earlier run (the last complete one "
            f"is {complete[-1]}): resume with --resume_from_checkpoint {complete[-1]} (the "
            "recipes do so by themselves), or start over with --overwrite_output_dir true"
        )
    remove_checkpoints(args, checkpoints)
