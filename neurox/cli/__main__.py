"""``python -m neurox.cli``: the same as the ``neurox`` command."""
import sys

from . import main

sys.exit(main())
