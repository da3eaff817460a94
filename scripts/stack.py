"""``python scripts/stack.py up|down|status``: the local stack (see :mod:`prelabel_stack`).

The code lives in the ``prelabel_stack`` package beside this file (config, processes,
components, rendering); this file only runs its command line.
"""

import sys

from prelabel_stack.cli import main

if __name__ == "__main__":
    sys.exit(main())
