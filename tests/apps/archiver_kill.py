"""``zart-es archiver`` that SIGKILLs itself at a chosen point of a batch (crash tests).

``ZART_TEST_KILL_PUT=N``: right after the archive's N-th object write (between a batch's
events and executions objects, or between its executions object and the purge);
``ZART_TEST_KILL_PURGE=N``: right after the N-th execution removed from Redis (mid-purge).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from zart_es.archive import ObjectStore
from zart_es.cli import main
from zart_es.store import ArchiveQueue


def _after(count_env: str, wrapped: Any) -> Any:
    left = int(os.environ.get(count_env, "0"))

    async def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal left
        result = await wrapped(*args, **kwargs)
        left -= 1
        if left == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    return call


ObjectStore.put_new = _after("ZART_TEST_KILL_PUT", ObjectStore.put_new)  # type: ignore[method-assign]
_init = ArchiveQueue.__init__


def _init_killing(self: ArchiveQueue, *args: Any) -> None:
    _init(self, *args)
    self._purge = _after("ZART_TEST_KILL_PURGE", self._purge)  # type: ignore[attr-defined]


ArchiveQueue.__init__ = _init_killing  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
