"""The schedule routes of the HTTP API (``/schedules``): one
:class:`~zart_es.Schedules` call each (docs/schedules.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from zart_es.api._problems import errors
from zart_es.client import Client
from zart_es.core import DEFAULT_ID_TEMPLATE, ScheduleNotFound, ScheduleState, schedule_to_dict
from zart_es.ops import Backfilled, Schedules


class ScheduleRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /schedules``: exactly one of ``cron`` and ``every``."""

    name: str
    workflow: str
    input: Any = None
    cron: str | None = None
    every: str | int | None = None
    timezone: str = "UTC"
    overlap: str = "skip"
    id_template: str = DEFAULT_ID_TEMPLATE
    anchor: str = "epoch"
    """``every``: ``epoch`` (multiples since the Unix epoch) or ``start`` (from now on)."""
    replace: bool = False
    by: str = ""


class ScheduleView(msgspec.Struct, frozen=True):
    """A schedule, its progress and its next occurrences (ISO 8601, its time zone)."""

    name: str
    workflow: str
    input: Any
    cron: str
    every_ms: int
    timezone: str
    overlap: str
    id_template: str
    paused: bool
    created_ms: int
    cron_syntax: int
    """1: a 6- or 7-field ``cron`` reads seconds first (as Zart)."""
    anchor: str
    state: ScheduleState | None
    next: list[str]


def _schedules(request: Request[Any, Any, Any]) -> Schedules:
    client: Client = request.app.state.client
    return Schedules(client)


async def _view(schedules: Schedules, name: str, upcoming: int = 3) -> ScheduleView:
    schedule = await schedules.get(name)
    plain = schedule_to_dict(schedule)
    nexts = [] if schedule.paused else await schedules.next_occurrences(name, upcoming)
    return ScheduleView(**plain, state=await schedules.state(name),
                        next=[t.isoformat() for t in nexts])


@get("/schedules", summary="Recurring schedules", **errors())
async def list_schedules(request: Request[Any, Any, Any]) -> list[ScheduleView]:
    """Every schedule with its progress (last occurrence, started, skipped)."""
    schedules = _schedules(request)
    return [await _view(schedules, s.name, 1) for s in await schedules.list()]


@post("/schedules", status_code=HTTP_201_CREATED, summary="Define a recurring schedule",
      **errors("schedule_exists", body=True))
async def add_schedule(
    request: Request[Any, Any, Any], data: JSONBody[ScheduleRequest]
) -> ScheduleView:
    """409 ``schedule_exists`` for a taken name unless ``replace`` is true."""
    schedules = _schedules(request)
    await schedules.add(data.name, data.workflow, data.input, cron=data.cron, every=data.every,
                        timezone=data.timezone, overlap=data.overlap,
                        id_template=data.id_template, anchor=data.anchor,
                        replace=data.replace, by=data.by)
    return await _view(schedules, data.name)


@get("/schedules/{name:str}", summary="One schedule", **errors("not_found"))
async def get_schedule(request: Request[Any, Any, Any], name: FromPath[str]) -> ScheduleView:
    """The schedule, its progress and its next five occurrences."""
    return await _view(_schedules(request), name, 5)


@delete("/schedules/{name:str}", status_code=HTTP_200_OK, summary="Delete a schedule",
        **errors("not_found", "invalid_request"))
async def remove_schedule(
    request: Request[Any, Any, Any], name: FromPath[str], by: FromQuery[str] = ""
) -> dict[str, Any]:
    """Executions it started are not touched. 404 for an unknown name. ``?by=`` names the
    operator in the audit stream."""
    if not await _schedules(request).remove(name, by=by):
        raise ScheduleNotFound(name)
    return {"name": name, "removed": True}


@post("/schedules/{name:str}/pause", status_code=HTTP_200_OK, summary="Pause a schedule",
      **errors("not_found", "invalid_request"))
async def pause_schedule(
    request: Request[Any, Any, Any], name: FromPath[str], by: FromQuery[str] = ""
) -> ScheduleView:
    """Occurrences that fall while paused are not started, not even on resume."""
    schedules = _schedules(request)
    await schedules.pause(name, by=by)
    return await _view(schedules, name)


@post("/schedules/{name:str}/resume", status_code=HTTP_200_OK, summary="Resume a schedule",
      **errors("not_found", "invalid_request"))
async def resume_schedule(
    request: Request[Any, Any, Any], name: FromPath[str], by: FromQuery[str] = ""
) -> ScheduleView:
    """Occurrences from now on are started again."""
    schedules = _schedules(request)
    await schedules.resume(name, by=by)
    return await _view(schedules, name)


class BackfillRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /schedules/{name}/backfill``: the range [``start``, ``end``)."""

    start: datetime
    end: datetime
    overlap: str | None = None
    """Among the backfilled occurrences (default: the schedule's policy)."""
    dry_run: bool = False
    by: str = ""


@post("/schedules/{name:str}/backfill", status_code=HTTP_200_OK,
      summary="Start the occurrences of a past range, once each",
      **errors("not_found", "invalid_request", body=True))
async def backfill_schedule(
    request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[BackfillRequest]
) -> Backfilled:
    """Each occurrence's id is the one the scheduler gives it, so one that ran, or a second
    backfill, starts nothing new; ``dry_run`` only counts the occurrences."""
    return await _schedules(request).backfill(name, data.start, data.end,
                                              overlap=data.overlap, dry_run=data.dry_run,
                                              by=data.by)


ROUTES = [list_schedules, add_schedule, get_schedule, remove_schedule, pause_schedule,
          resume_schedule, backfill_schedule]
