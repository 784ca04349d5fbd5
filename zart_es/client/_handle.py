"""A handle on one execution, like DBOS's ``WorkflowHandle`` or arq's ``Job``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from zart_es.core import AnyEvent
from zart_es.ops import ExecutionStatus

if TYPE_CHECKING:
    from zart_es.client._client import Client


class ExecutionHandle:
    """One execution of a deployment, by id: ``client.execution(id)``.

    Every method is the :class:`~zart_es.Client` call of the same name for this id; the
    handle holds no state of its own, so it never goes stale and costs nothing to keep.
    """

    def __init__(self, client: Client, execution_id: str) -> None:
        self._client = client
        self.execution_id = execution_id

    def __repr__(self) -> str:
        return f"ExecutionHandle({self.execution_id!r})"

    async def status(self, *, type: Any = None) -> ExecutionStatus:
        """Where it stands, with its result or error once it has ended."""
        return await self._client.status(self.execution_id, type=type)

    async def result(self, timeout: float | None = None, *, type: Any = None) -> Any:
        """Wait for the end; its result, or :class:`~zart_es.ExecutionFailedError`."""
        return await self._client.result(self.execution_id, timeout, type=type)

    async def wait(self, timeout: float) -> ExecutionStatus:
        """Wait up to ``timeout`` seconds for the end; its status either way."""
        return await self._client.wait(self.execution_id, timeout)

    def history(self) -> AsyncIterator[AnyEvent]:
        """Its events, oldest first."""
        return self._client.history(self.execution_id)

    async def cancel(self, reason: str | None = None) -> bool:
        """Ask it to stop; False if it already ended."""
        return await self._client.cancel(self.execution_id, reason)

    async def send_signal(self, name: str, payload: Any = None, *,
                          signal_id: str | None = None) -> bool:
        """Deliver signal ``name`` to it."""
        return await self._client.send_signal(self.execution_id, name, payload,
                                              signal_id=signal_id)
