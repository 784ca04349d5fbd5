"""The operator routes of the HTTP API (``/admin/...``): repair ended executions and
manage pause rules. Each route is one :class:`Client` call; errors use the codes of
:mod:`zart_es.api._problems` (``repair_refused`` 409, ``unknown_step`` 422, ...)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Request, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from zart_es.api._problems import errors
from zart_es.client import Client
from zart_es.ops import PauseRule, rule_name


class RetryStepRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /admin/executions/{id}/retry-step``."""

    step: str | None = None
    reason: str = ""
    by: str = ""


class RerunRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /admin/executions/{id}/rerun``."""

    steps: list[str]
    preserve: list[str] = msgspec.field(default_factory=list)
    """Completed steps after the re-run point to keep (listed as stale)."""
    reason: str = ""
    by: str = ""


class RestartRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /admin/executions/{id}/restart``."""

    reason: str = ""
    by: str = ""


class PauseRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /admin/pauses``: exactly one of ``workflow``, ``queue``,
    ``execution_id`` and ``step`` (a glob of step names)."""

    workflow: str | None = None
    queue: str | None = None
    execution_id: str | None = None
    step: str | None = None
    reason: str = ""
    by: str = ""


class Repaired(msgspec.Struct, frozen=True, omit_defaults=True):
    """Reply of the repair routes: what runs again."""

    id: str
    step: str | None = None
    forgotten: list[str] | None = None
    run: int | None = None


class PauseChange(msgspec.Struct, frozen=True):
    """Reply of the pause routes."""

    rule: str
    changed: bool
    resumed: int = 0


def _client(request: Request[Any, Any, Any]) -> Client:
    client: Client = request.app.state.client
    return client


@post("/admin/executions/{execution_id:str}/retry-step", status_code=HTTP_202_ACCEPTED,
      summary="Run the failed step of a failed execution again",
      **errors("not_found", "repair_refused", "unknown_step", body=True))
async def retry_step(
    request: Request[Any, Any, Any], execution_id: FromPath[str],
    data: JSONBody[RetryStepRequest | None] = None,
) -> Repaired:
    """Every other recorded result is kept. 409 ``repair_refused`` unless it ended failed.
    No body: the latest failed step."""
    data = data or RetryStepRequest()
    step = await _client(request).retry_step(execution_id, data.step, reason=data.reason,
                                             by=data.by)
    return Repaired(execution_id, step=step)


@post("/admin/executions/{execution_id:str}/rerun", status_code=HTTP_202_ACCEPTED,
      summary="Re-run an ended execution from chosen steps",
      **errors("not_found", "repair_refused", "unknown_step", body=True))
async def rerun(
    request: Request[Any, Any, Any], execution_id: FromPath[str], data: JSONBody[RerunRequest]
) -> Repaired:
    """Forgets the chosen steps and every durable call recorded after the first of them,
    but the completed steps in ``preserve`` (kept, listed as stale)."""
    forgotten = await _client(request).rerun(execution_id, data.steps, reason=data.reason,
                                             by=data.by, preserve=data.preserve)
    return Repaired(execution_id, forgotten=forgotten)


@post("/admin/executions/{execution_id:str}/restart", status_code=HTTP_202_ACCEPTED,
      summary="Run an ended execution again from scratch",
      **errors("not_found", "repair_refused", body=True))
async def restart(
    request: Request[Any, Any, Any], execution_id: FromPath[str],
    data: JSONBody[RestartRequest | None] = None,
) -> Repaired:
    """Same id and input; the old run's events stay in the log above ``RunRestarted``.
    The body (reason, by) is optional."""
    data = data or RestartRequest()
    run = await _client(request).restart(execution_id, reason=data.reason, by=data.by)
    return Repaired(execution_id, run=run)


@post("/admin/executions/{execution_id:str}/release", status_code=HTTP_202_ACCEPTED,
      summary="Let a quarantined execution run again",
      **errors("not_found", "repair_refused", body=True))
async def release(
    request: Request[Any, Any, Any], execution_id: FromPath[str],
    data: JSONBody[RestartRequest | None] = None,
) -> Repaired:
    """409 ``repair_refused`` unless it is quarantined. The body (reason, by) is optional."""
    data = data or RestartRequest()
    await _client(request).release(execution_id, reason=data.reason, by=data.by)
    return Repaired(execution_id)


@post("/admin/executions/{execution_id:str}/reopen", status_code=HTTP_202_ACCEPTED,
      summary="Reopen an execution a store error ended (before 0.4)",
      **errors("not_found", "repair_refused", body=True))
async def reopen(
    request: Request[Any, Any, Any], execution_id: FromPath[str],
    data: JSONBody[RestartRequest | None] = None,
) -> Repaired:
    """409 ``repair_refused`` unless it ended failed by a store error (Redis refused a
    write for it, in a version before 0.4). The body (reason, by) is optional."""
    data = data or RestartRequest()
    await _client(request).reopen(execution_id, reason=data.reason, by=data.by)
    return Repaired(execution_id)


@get("/admin/pauses", summary="Pause rules in force", **errors())
async def list_pauses(request: Request[Any, Any, Any]) -> list[PauseRule]:
    """Each rule with who set it, when and why."""
    return await _client(request).pauses()


@post("/admin/pauses", status_code=HTTP_200_OK,
      summary="Pause a workflow, a queue, an execution or the steps matching a glob",
      **errors(body=True))
async def add_pause(request: Request[Any, Any, Any], data: JSONBody[PauseRequest]) -> PauseChange:
    """Executions stop at their next step boundary (a step rule: before a matching step);
    ``changed`` is false if already paused."""
    added = await _client(request).pause(workflow=data.workflow, queue=data.queue,
                                         execution_id=data.execution_id, step=data.step,
                                         reason=data.reason, by=data.by)
    return PauseChange(rule_name(data.workflow, data.queue, execution_id=data.execution_id,
                                 step=data.step), added)


@delete("/admin/pauses/{kind:str}/{name:path}", status_code=HTTP_200_OK,
        summary="Lift a pause rule", **errors("invalid_request"))
async def remove_pause(
    request: Request[Any, Any, Any],
    kind: FromPath[Literal["workflow", "queue", "execution", "step"]],
    name: FromPath[str], by: FromQuery[str] = "",
) -> PauseChange:
    """``kind`` is ``workflow``, ``queue``, ``execution`` or ``step``; the executions the
    rule held continue.
    ``name`` is the rest of the path (names may hold ``/``). ``?by=`` names the operator
    in the audit stream."""
    name = name.removeprefix("/")
    client = _client(request)
    before = {r.rule for r in await client.pauses()}
    target = {"execution": "execution_id"}.get(kind, kind)
    resumed = await client.resume(**{target: name}, by=by)
    return PauseChange(f"{kind}:{name}", f"{kind}:{name}" in before, resumed)


ROUTES = [retry_step, rerun, restart, release, reopen, list_pauses, add_pause,
          remove_pause]
