"""``python -m zart_es`` is the ``zart-es`` command."""

import sys

from zart_es.cli import main

sys.exit(main())
