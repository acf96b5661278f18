"""``python -m hftl ...``: the ``hftl`` command, as a module, for ``accelerate launch -m hftl train
TASK ...`` (several processes or machines)."""

import sys

from hftl.cli import process_main

if __name__ == "__main__":
    sys.exit(process_main())
