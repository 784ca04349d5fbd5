"""Where the archive's objects live: a local directory or an object store, through obstore.

One small surface (put a new object, get one, list a prefix) over obstore, so the same
code writes to ``.zart-data/archive`` on a laptop and to ``s3://bucket/prefix`` (or
``gs://``, ``az://``) in production. Credentials and endpoints come from the usual
environment variables of each store (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``,
``AWS_ALLOW_HTTP`` for a plain-HTTP S3 server, ...).

Objects are written once and never changed: :meth:`ObjectStore.put_new` refuses to
replace one (a conditional put), so a retried write of the same batch is a no-op and
two archivers racing for one batch cannot both write it.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError
from obstore.store import LocalStore, from_url

from zart_es.core import ArchiveError, ConfigError

REMOTE_SCHEMES = ("s3", "s3a", "gs", "az", "abfs", "abfss", "memory")


class ObjectStore:
    """The archive's root: a local directory (a path or ``file://``) or a bucket prefix."""

    def __init__(self, url: str) -> None:
        scheme = urlparse(url).scheme
        try:
            if scheme in REMOTE_SCHEMES:
                self._store = from_url(url)
                self._root: Path | None = None
            elif scheme in ("", "file"):
                root = Path(url.removeprefix("file://")).expanduser().absolute()
                root.mkdir(parents=True, exist_ok=True)
                self._store = LocalStore(root)
                self._root = root
            else:
                raise ConfigError(f"archive URL {url!r}: use a directory, file://, "
                                  f"or one of {', '.join(s + '://' for s in REMOTE_SCHEMES)}")
        except (BaseError, ValueError, OSError) as exc:
            raise ConfigError(f"archive URL {url!r}: {exc}") from None
        self.url = url

    async def put_new(self, path: str, data: bytes) -> bool:
        """Write object ``path`` unless it exists; False (nothing written) if it does."""
        try:
            await obstore.put_async(self._store, path, data, mode="create")
        except AlreadyExistsError:
            return False
        except (BaseError, OSError) as exc:
            raise ArchiveError(f"cannot write {path!r} to the archive {self.url}: "
                               f"{_first_line(exc)}") from None
        return True

    async def get(self, path: str) -> bytes:
        """The bytes of object ``path``."""
        try:
            result = await obstore.get_async(self._store, path)
            return bytes(await result.bytes_async())
        except (BaseError, OSError) as exc:
            raise ArchiveError(f"cannot read {path!r} from the archive {self.url}: "
                               f"{_first_line(exc)}") from None

    async def get_if_exists(self, path: str) -> bytes | None:
        """The bytes of object ``path``; None when there is none (deleted meanwhile)."""
        try:
            result = await obstore.get_async(self._store, path)
            return bytes(await result.bytes_async())
        except FileNotFoundError:
            return None
        except (BaseError, OSError) as exc:
            raise ArchiveError(f"cannot read {path!r} from the archive {self.url}: "
                               f"{_first_line(exc)}") from None

    async def delete(self, path: str) -> None:
        """Delete object ``path`` (nothing when it is gone already)."""
        try:
            await obstore.delete_async(self._store, path)
        except FileNotFoundError:
            return
        except (BaseError, OSError) as exc:
            raise ArchiveError(f"cannot delete {path!r} from the archive {self.url}: "
                               f"{_first_line(exc)}") from None

    def make_durable(self, path: str) -> None:
        """Make object ``path`` survive a power loss: fsync it and its folder in a local
        directory (an object store's put is durable when it returns)."""
        if self._root is None:
            return
        file = self._root / path
        for target, flags in ((file, os.O_RDONLY), (file.parent, os.O_RDONLY | os.O_DIRECTORY)):
            fd = os.open(target, flags)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    async def exists(self, path: str) -> bool:
        """Whether object ``path`` exists."""
        try:
            await obstore.head_async(self._store, path)
        except FileNotFoundError:
            return False
        except (BaseError, OSError) as exc:
            raise ArchiveError(f"cannot look up {path!r} in the archive {self.url}: "
                               f"{_first_line(exc)}") from None
        return True

    async def list(self, prefix: str) -> list[str]:
        """Paths of the objects under ``prefix`` (a folder: ``"executions"``), sorted."""
        return sorted(await self.sizes(prefix))

    async def sizes(self, prefix: str) -> dict[str, int]:
        """The objects under ``prefix`` and their sizes in bytes."""
        paths: dict[str, int] = {}
        if self._root is not None and not (self._root / prefix).is_dir():
            # no such folder yet; also spares obstore a failing listing (after one, the
            # process was seen to abort at exit, obstore 0.12)
            return {}
        try:
            async for chunk in obstore.list(self._store, prefix=prefix):
                paths.update((meta["path"], meta["size"]) for meta in chunk)
        except FileNotFoundError:
            return {}
        except (BaseError, OSError) as exc:
            raise ArchiveError(f"cannot list {prefix!r} in the archive {self.url}: "
                               f"{_first_line(exc)}") from None
        return paths


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
