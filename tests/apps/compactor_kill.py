"""``zart-es archive compact`` that SIGKILLs itself at a chosen point (crash tests).

``ZART_TEST_KILL_PUT=N``: right after the archive's N-th object write (between a folder's
compacted events and executions files, or before any input is deleted);
``ZART_TEST_KILL_DELETE=N``: right after the N-th input deleted.
"""

from __future__ import annotations

import sys

from tests.apps.archiver_kill import _after
from zart_es.archive import ObjectStore
from zart_es.cli import main

ObjectStore.delete = _after("ZART_TEST_KILL_DELETE", ObjectStore.delete)  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
