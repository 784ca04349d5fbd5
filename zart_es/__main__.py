"""``python -m zart_es`` is the ``zart-es`` command."""

import sys

from .cli import main

sys.exit(main())
