"""``python -m prelabel_stack`` (with scripts/ on the path): the same as scripts/stack.py."""

import sys

from prelabel_stack.cli import main

sys.exit(main())
