"""The output directory of a run: the Hugging Face example scripts' start-up rule, made safe.

A directory that holds a finished run (``run_info.json``) is refused unless
``--overwrite_output_dir`` is given; one that holds checkpoints is resumed from its last complete
checkpoint (:mod:`hftl.checkpoints`); model files that no hftl run wrote are refused.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from hftl.checkpoints import last_complete_checkpoint, list_checkpoints, remove_checkpoints
from hftl.errors import ConfigError
from hftl.logs import TRAIN_LOG
from hftl.run_files import FINISHED_RUN, MODEL_FILES, RUN_STARTED

logger = logging.getLogger(__name__)


def check_output_dir_writable(output_dir) -> None:
    """Refuse an ``--output_dir`` that cannot be a writable directory, naming why."""
    path = Path(output_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"--output_dir {output_dir}: this is a file, not a directory; choose another --output_dir"
        )
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ConfigError(
            f"--output_dir {output_dir}: {existing} is a file, so no directory can be made below "
            "it; choose another --output_dir"
        )
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"--output_dir {output_dir}: {existing} is not writable; choose another --output_dir"
        )


def prepare_output_dir(args) -> str | None:
    """Decide, before anything is written, what a run does with its output directory, and
    return the checkpoint to resume from (None: start at step 0).

    * a directory holding a finished run (``run_info.json``): refused, unless
      ``--overwrite_output_dir`` (then its checkpoints, that file and its train.log are removed
      first);
    * ``--resume_from_checkpoint``: as given (checked by ``TransferTrainer.train``);
    * otherwise its last complete checkpoint, said in a log line (incomplete ones are skipped);
    * model files without a checkpoint and without a run of hftl's that started there: refused.

    Every process decides from the same files; only the main process changes them.
    """
    output = Path(args.output_dir)
    check_output_dir_writable(output)
    resume = args.resume_from_checkpoint or None
    overwrite = getattr(args, "overwrite_output_dir", False)
    if not output.is_dir():
        return resume
    if overwrite:
        if resume is not None and (resume in (True, "true", "True") or _inside(resume, output)):
            raise ConfigError(
                f"--overwrite_output_dir removes the checkpoints in {output}, and "
                f"--resume_from_checkpoint {resume} reads one of them; give only one of the two"
            )
        remove_checkpoints(
            args, list_checkpoints(output), also=(output / FINISHED_RUN, output / TRAIN_LOG)
        )
        return resume
    if (output / FINISHED_RUN).is_file():
        raise ConfigError(
            f"--output_dir {output} already holds a finished run ({FINISHED_RUN}, the model); "
            "choose another --output_dir, or pass --overwrite_output_dir true to replace it"
        )
    if resume is not None:
        return resume
    last = last_complete_checkpoint(output)
    if last is not None:
        logger.info(
            "resuming from %s, the last complete checkpoint in %s (--overwrite_output_dir true "
            "starts over)",
            last,
            output,
        )
        return str(last)
    found = [name for name in MODEL_FILES if (output / name).is_file()]
    if found and not (output / RUN_STARTED).is_file():
        raise ConfigError(
            f"--output_dir {output} already holds a model ({found[0]}) that no hftl run there "
            "wrote; choose another --output_dir, or pass --overwrite_output_dir true to replace it"
        )
    return None


def _inside(path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
