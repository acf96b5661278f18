"""Logging set up by the programs (recipes, the ``hftl`` command), never at import, and always
undone: importing hftl only adds a ``NullHandler``; :func:`console` and :class:`RunLog` restore
every handler, level and verbosity they change."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import transformers
from transformers.trainer_callback import ProgressCallback

# Bars that measure bookkeeping, not work: gone from the screen (downloads, feature extraction,
# training and evaluation keep theirs).
BOOKKEEPING_BARS = frozenset({"Loading weights", "Writing model shards"})
# The training logs (loss, learning rate, evaluation) as train.log lines; no console handler.
PROGRESS_LOGGER = "hftl.progress"
TRAIN_LOG = "train.log"  # a run's log in its output directory (appended to when it resumes)


def _without_bookkeeping_bars(factory, args, kwargs):
    if kwargs.get("desc") in BOOKKEEPING_BARS:
        return transformers.utils.logging.EmptyTqdm(*args, **kwargs)
    return factory(*args, **kwargs)


@contextlib.contextmanager
def console():
    """A screen a person can read, for the duration of a program: hftl's own messages on
    stderr, ``[hftl] ...``, at ``$HFTL_VERBOSITY`` (default INFO); from transformers only errors
    (hftl says what its load reports and warnings mean; a run keeps them in ``train.log``);
    Python warnings go to the run's ``train.log`` (counted at the end of the run); no bars for
    loading and writing weights."""
    logger = logging.getLogger("hftl")
    if any(not isinstance(h, logging.NullHandler) for h in logger.handlers):
        yield  # the caller configured hftl's logger: leave it alone
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[hftl] %(message)s"))
    handler.addFilter(lambda record: not record.name.startswith(PROGRESS_LOGGER))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(os.environ.get("HFTL_VERBOSITY", "INFO").upper())
    logger.propagate = False
    try:
        with quiet_libraries():
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


@contextlib.contextmanager
def quiet_libraries():
    """Errors only from transformers' console handlers, Python warnings captured (a run's
    train.log gets them), no bookkeeping bars; everything restored after."""
    hf_handlers = [(h, h.level) for h in logging.getLogger("transformers").handlers]
    for hf_handler, level in hf_handlers:
        hf_handler.setLevel(max(level, logging.ERROR))
    warnings_logger = logging.getLogger("py.warnings")
    drop = logging.NullHandler()
    warnings_saved = warnings_logger.propagate
    warnings_logger.addHandler(drop)
    warnings_logger.propagate = False
    logging.captureWarnings(True)
    hook = transformers.utils.logging.set_tqdm_hook(_without_bookkeeping_bars)
    try:
        yield
    finally:
        transformers.utils.logging.set_tqdm_hook(hook)
        logging.captureWarnings(False)
        warnings_logger.removeHandler(drop)
        warnings_logger.propagate = warnings_saved
        for hf_handler, level in hf_handlers:
            hf_handler.setLevel(level)


class _Counter(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record):
        self.count += 1


class RunLog:
    """Mirror hftl's and transformers' log lines (INFO and up), captured Python warnings and the
    training logs into ``output_dir/train.log`` while a run lasts; transformers' console handlers
    show errors only meanwhile (hftl's messages say what matters). :meth:`stop` restores
    everything (it is safe to call twice) and says how many library warnings train.log got."""

    LOGGERS = ("hftl", "transformers", "py.warnings")

    def __init__(self, output_dir: str | Path):
        path = Path(output_dir)
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / TRAIN_LOG
        self.handler = logging.FileHandler(self.path)
        self.handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        self.handler.setLevel(logging.INFO)
        self.warnings = _Counter()
        hf_logger = logging.getLogger("transformers")
        self._console_levels = [(h, h.level) for h in hf_logger.handlers]
        self._verbosity = transformers.utils.logging.get_verbosity()
        for console_handler, level in self._console_levels:
            console_handler.setLevel(max(level, logging.ERROR))
        hftl_logger = logging.getLogger("hftl")
        self._hftl_level = hftl_logger.level
        if hftl_logger.getEffectiveLevel() > logging.INFO:  # train.log gets hftl's INFO lines
            hftl_logger.setLevel(logging.INFO)
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self.handler)
        for name in ("transformers", "py.warnings"):
            logging.getLogger(name).addHandler(self.warnings)
        transformers.utils.logging.set_verbosity_info()

    def stop(self) -> None:
        if self.handler is None:
            return
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self.handler)
        for name in ("transformers", "py.warnings"):
            logging.getLogger(name).removeHandler(self.warnings)
        self.handler.close()
        self.handler = None
        for console_handler, level in self._console_levels:
            console_handler.setLevel(level)
        logging.getLogger("hftl").setLevel(self._hftl_level)
        transformers.utils.logging.set_verbosity(self._verbosity)
        if self.warnings.count:
            logging.getLogger("hftl").info(
                "%d warning%s from the libraries in %s", self.warnings.count,
                "s" if self.warnings.count > 1 else "", self.path,
            )  # fmt: skip


class ProgressLine(ProgressCallback):
    """transformers' progress bars without a printed dict per logging step: the latest loss and
    learning rate sit on the training bar, each evaluation is one line, and every log (with the
    final summary) goes to ``train.log`` (logger ``hftl.progress``)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        shown = {k: v for k, v in logs.items() if k != "total_flos"}
        logging.getLogger(PROGRESS_LOGGER).info("step %d: %s", state.global_step, shown)
        if self.training_bar is None:
            return
        if "loss" in shown:
            self.training_bar.set_postfix(
                loss=f"{shown['loss']:.4g}", lr=f"{shown.get('learning_rate', 0):.3g}",
                refresh=False,
            )  # fmt: skip
        elif any(k.startswith("eval_") for k in shown):
            metrics = ", ".join(
                f"{k.removeprefix('eval_')} {v:.4g}" for k, v in shown.items()
                if k.startswith("eval_") and isinstance(v, float) and "per_second" not in k
                and k != "eval_runtime"
            )  # fmt: skip
            self.training_bar.write(f"[hftl] epoch {state.epoch or 0:g}: {metrics}")
