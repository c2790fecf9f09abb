"""``python -m pyjac``: the ``pyjac`` command."""

import sys

from .cli import main

sys.exit(main())
