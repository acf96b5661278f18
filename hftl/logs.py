"""Logging set up by the programs (recipes, the ``hftl`` command), never at import, and always
undone: importing hftl only adds a ``NullHandler``; :func:`console` and :class:`RunLog` restore
every handler, level and verbosity they change."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import transformers


@contextlib.contextmanager
def console():
    """hftl's own messages (group table, unfreezing, feature cache) on stderr, ``[hftl] ...``,
    at ``$HFTL_VERBOSITY`` (default INFO), for the duration of a program."""
    logger = logging.getLogger("hftl")
    if any(not isinstance(h, logging.NullHandler) for h in logger.handlers):
        yield  # the caller configured hftl's logger: leave it alone
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[hftl] %(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(os.environ.get("HFTL_VERBOSITY", "INFO").upper())
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


class RunLog:
    """Mirror hftl's and transformers' log lines (INFO and up) into ``output_dir/train.log``
    while a run lasts; transformers' console handlers show warnings only meanwhile.
    :meth:`stop` restores everything (it is safe to call twice)."""

    def __init__(self, output_dir: str | Path):
        path = Path(output_dir)
        path.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(path / "train.log")
        self.handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        self.handler.setLevel(logging.INFO)
        hf_logger = logging.getLogger("transformers")
        self._console_levels = [(h, h.level) for h in hf_logger.handlers]
        self._verbosity = transformers.utils.logging.get_verbosity()
        for console_handler, level in self._console_levels:
            console_handler.setLevel(max(level, logging.WARNING))
        hftl_logger = logging.getLogger("hftl")
        self._hftl_level = hftl_logger.level
        if hftl_logger.getEffectiveLevel() > logging.INFO:  # train.log gets hftl's INFO lines
            hftl_logger.setLevel(logging.INFO)
        hftl_logger.addHandler(self.handler)
        hf_logger.addHandler(self.handler)
        transformers.utils.logging.set_verbosity_info()

    def stop(self) -> None:
        if self.handler is None:
            return
        for name in ("hftl", "transformers"):
            logging.getLogger(name).removeHandler(self.handler)
        self.handler.close()
        self.handler = None
        for console_handler, level in self._console_levels:
            console_handler.setLevel(level)
        logging.getLogger("hftl").setLevel(self._hftl_level)
        transformers.utils.logging.set_verbosity(self._verbosity)
