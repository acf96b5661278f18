"""Bad user input: one error class, and the boundary where it becomes one line on the screen.

Everything a user hands hftl (config files, flags, data files and folders, model paths,
checkpoints, the output directory) is checked where it is read. A problem there raises
:class:`ConfigError` with a single line that names the file, row, column, class or flag and says
what to do. The recipes and the ``hftl`` command run through :func:`run_main`, which prints that
line (``prog: error: ...``) instead of a traceback; ``HFTL_DEBUG=1`` shows the traceback too.
Anything else is a bug in hftl (or below it) and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

DEBUG_ENV = "HFTL_DEBUG"


class ConfigError(ValueError):
    """Bad user input (config, flags, data, model path, checkpoint, output directory), with a
    one-line message that says where the problem is and what to do."""


def one_line(error: BaseException | str) -> str:
    """``error``'s message on one line (its first non-empty line if it has several paragraphs)."""
    text = str(error).strip()
    if not text:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    return " ".join(text.split())


def first_line(error: BaseException | str) -> str:
    """The first non-empty line of ``error``'s message (for wrapping a library's long error)."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__ if isinstance(error, BaseException) else ""


def shown(names, limit: int = 3) -> str:
    """``a, b, c, ...``: the first ``limit`` of ``names`` for a one-line message."""
    names = [str(name) for name in names]
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def run_main(main: Callable[[], object], prog: str) -> int:
    """Run a command-line entry point: bad input exits 2 with ``prog: error: <one line>``, Ctrl-C
    exits 130 with a line saying how to continue; both with the traceback under ``HFTL_DEBUG=1``.

    Returns 0 when ``main`` returns (a returned int is passed through as the exit status). hftl's
    messages go to stderr meanwhile (:func:`hftl.logs.console`).
    """
    from hftl.logs import console

    try:
        with console():
            result = main()
    except ConfigError as error:
        if debug_enabled():
            raise
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug_enabled():
            raise
        print(
            f"{prog}: interrupted; run the same command again to continue from the last complete "
            "checkpoint in the output directory",
            file=sys.stderr,
        )
        return 130
    return result if isinstance(result, int) else 0
