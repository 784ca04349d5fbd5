"""What a recurring schedule is and when it fires: pure functions, no I/O.

A :class:`Schedule` fires at instants in UTC, whole seconds: a cron expression (in the
schedule's time zone, DST handled by croniter) or multiples of ``every`` since the Unix
epoch. The execution id of an occurrence is rendered from the schedule's ``id_template``
and the occurrence's UTC text ``YYYYMMDDTHHMMSSZ``, so it depends only on (schedule,
occurrence). :mod:`zart_es.ops._schedules` stores schedules and starts their occurrences.
"""

from __future__ import annotations

import builtins
import json
import re
import string
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

# croniter ships no type information: this module's _Cron is the one typed doorway to it
from croniter import croniter  # type: ignore[import-untyped]

from zart_es.core._codec import decode_value
from zart_es.core._cron import SECONDS_FIRST, cron_form, migrate_seconds_last
from zart_es.core._durations import Duration, format_ms, to_ms
from zart_es.core._errors import ConfigError, InvalidExecutionId
from zart_es.core._names import check_execution_id, check_workflow_name

OVERLAP_POLICIES = ("skip", "cancel_and_restart", "always")
"""What a due occurrence does while the schedule's previous execution has not ended."""

TEMPLATE_FIELDS = frozenset({"schedule", "occurrence", "workflow"})
"""The fields an ``id_template`` may use; ``{occurrence}`` is required."""

CRON_ALIASES = frozenset(
    {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"})

DEFAULT_ID_TEMPLATE = "{schedule}-{occurrence}"
"""Execution ids of occurrences, unless a schedule gives its own template."""

MISSED_COUNT_LIMIT = 10_000
"""At most this many missed cron occurrences are counted (in ``skipped``) per catch-up."""

MAX_NEXT_OCCURRENCES = 1000

_HASHED_FIELD = re.compile(r"[hr](\(\d+-\d+\))?(/\d+)?", re.IGNORECASE)
_CRON_FIELD = re.compile(r"\S+", re.ASCII)
_SAMPLE_OCCURRENCE = "20261125T020000Z"


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """A schedule's definition, as stored. ``input`` is the workflow input, msgpack-encoded;
    exactly one of ``cron`` and ``every_ms`` is set. ``created_ms`` (Redis' clock) is when
    it was added or last replaced: occurrences before it are never started."""

    name: str
    workflow: str
    input: bytes
    cron: str = ""
    every_ms: int = 0
    timezone: str = "UTC"
    overlap: str = "skip"
    id_template: str = DEFAULT_ID_TEMPLATE
    paused: bool = False
    created_ms: int = 0
    cron_syntax: int = 0
    """How a 6-field ``cron`` reads: 1 (every definition written since 0.4) seconds first,
    as Zart; 0 (stored before) seconds last, migrated when it is loaded."""
    anchor: str = "epoch"
    """How ``every`` counts: ``epoch`` (multiples of the interval since the Unix epoch)
    or ``start`` (Zart's fixed delay: the first at registration, then each previous tick
    plus the interval)."""


EVERY_ANCHORS = ("epoch", "start")


class ScheduleState(msgspec.Struct, frozen=True):
    """A schedule's progress. ``last_ms``: the last occurrence handled (started or
    skipped), ms UTC; ``last_execution``: the id of the last one started; ``started`` /
    ``skipped``: occurrences started / not started (catch-up or overlap). ``pending`` is
    set while a claimed occurrence may not have been started yet (with
    ``pending_cancel``, the execution to cancel first); any scheduler finishes it."""

    last_ms: int
    last_execution: str = ""
    started: int = 0
    skipped: int = 0
    pending: bool = False
    pending_cancel: str = ""


class Due(NamedTuple):
    """What a tick finds in (after, now]: the latest occurrence (None: nothing due) and
    how many earlier ones it passes over (the catch-up rule skips them)."""

    latest: int | None
    missed: int




# -- the pure part: occurrences and ids (no I/O, no clock) ------------------------------


class _Cron:
    """Iterates a cron expression in a time zone, in ms UTC (the only croniter caller)."""

    def __init__(self, expr: str, timezone: str, start_ms: int,
                 syntax: int = SECONDS_FIRST) -> None:
        self._form = cron_form(expr, syntax)
        self._zone = ZoneInfo(timezone)
        self._start(start_ms)

    def _start(self, start_ms: int) -> None:
        start = datetime.fromtimestamp(start_ms / 1000, tz=self._zone)
        self._it: Any = croniter(self._form.expr, start_time=start,
                                 second_at_beginning=self._form.seconds_first,
                                 day_or=self._form.day_or)

    def next(self) -> int | None:
        """The next occurrence strictly after the current one; None if there is none."""
        years = self._form.years
        for _ in range(200):  # a year field skips to its next year; 200 years are all
            try:
                found = round(float(self._it.get_next(float)) * 1000)
            except (ValueError, TypeError, OverflowError):  # CroniterBadDateError
                return None
            year = datetime.fromtimestamp(found / 1000, tz=self._zone).year
            if years is None or year in years:
                return found
            later = [y for y in years if y > year]
            if not later:
                return None
            self._start(int(datetime(min(later), 1, 1, tzinfo=self._zone).timestamp()
                            * 1000) - 1000)
        return None

    def prev(self) -> int | None:
        """The occurrence strictly before the current one; None if there is none."""
        years = self._form.years
        for _ in range(200):
            try:
                found = round(float(self._it.get_prev(float)) * 1000)
            except (ValueError, TypeError, OverflowError):
                return None
            year = datetime.fromtimestamp(found / 1000, tz=self._zone).year
            if years is None or year in years:
                return found
            earlier = [y for y in years if y < year]
            if not earlier:
                return None
            self._start(int(datetime(max(earlier) + 1, 1, 1, tzinfo=self._zone).timestamp()
                            * 1000))
        return None


def occurrence_text(occurrence_ms: int) -> str:
    """The occurrence as it appears in execution ids: UTC ``YYYYMMDDTHHMMSSZ``."""
    return datetime.fromtimestamp(occurrence_ms // 1000, tz=UTC).strftime("%Y%m%dT%H%M%SZ")


def render_id(schedule: Schedule, occurrence_ms: int) -> str:
    """The execution id of one occurrence: the same for every scheduler, every time."""
    return schedule.id_template.format(schedule=schedule.name, workflow=schedule.workflow,
                                       occurrence=occurrence_text(occurrence_ms))


def counted_from(schedule: Schedule) -> int:
    """The instant a schedule's occurrences are counted after: when it was added or
    replaced (an ``every`` anchored at ``start`` fires at that instant itself)."""
    return schedule.created_ms - (1 if schedule.every_ms and schedule.anchor == "start" else 0)


def _offset(schedule: Schedule) -> int:
    """Where an ``every`` schedule's ticks fall: multiples of the interval after this."""
    return schedule.created_ms % schedule.every_ms if schedule.anchor == "start" else 0


def next_occurrence(schedule: Schedule, after_ms: int) -> int | None:
    """The first occurrence strictly after ``after_ms`` (None: the cron never fires again)."""
    if schedule.every_ms:
        every, offset = schedule.every_ms, _offset(schedule)
        return ((after_ms - offset) // every + 1) * every + offset
    return _cron(schedule, after_ms).next()


def _cron(schedule: Schedule, start_ms: int) -> _Cron:
    return _Cron(schedule.cron, schedule.timezone, start_ms, schedule.cron_syntax)


def occurrences(schedule: Schedule, after_ms: int, n: int) -> builtins.list[int]:
    """The first ``n`` occurrences strictly after ``after_ms``, in order."""
    if schedule.every_ms:
        first = next_occurrence(schedule, after_ms) or 0
        return [first + i * schedule.every_ms for i in range(n)]
    cron = _cron(schedule, after_ms)
    out: builtins.list[int] = []
    while len(out) < n and (t := cron.next()) is not None:
        out.append(t)
    return out


def occurrences_between(schedule: Schedule, start_ms: int, end_ms: int,
                        limit: int) -> builtins.list[int]:
    """The occurrences in [``start_ms``, ``end_ms``), in order; ConfigError if there are
    more than ``limit`` (a backfill names its range)."""
    found: builtins.list[int] = []
    after = start_ms - 1
    while True:
        batch = occurrences(schedule, after, min(1000, limit + 1))
        for t in batch:
            if t >= end_ms:
                return found
            found.append(t)
            if len(found) > limit:
                raise ConfigError(f"the range holds more than {limit:,} occurrences of "
                                  f"schedule {schedule.name!r}: backfill a shorter one")
        if not batch:
            return found
        after = batch[-1]


def due(schedule: Schedule, after_ms: int, now_ms: int) -> Due:
    """The occurrences in (``after_ms``, ``now_ms``]: the latest, and how many before it
    (cron: counted up to :data:`MISSED_COUNT_LIMIT`)."""
    if schedule.every_ms:
        every, offset = schedule.every_ms, _offset(schedule)
        first = ((after_ms - offset) // every + 1) * every + offset
        if first > now_ms:
            return Due(None, 0)
        latest = (now_ms - offset) // every * every + offset
        return Due(latest, (latest - first) // every)
    found = _cron(schedule, now_ms + 1).prev()
    if found is None or found <= after_ms:
        return Due(None, 0)
    cron = _cron(schedule, after_ms)
    missed = 0
    while missed < MISSED_COUNT_LIMIT and (t := cron.next()) is not None and t < found:
        missed += 1
    return Due(found, missed)


# -- validation -------------------------------------------------------------------------


def check_cron(expr: object, syntax: int = SECONDS_FIRST) -> str:
    """A cron expression of 5 fields (minute hour day-of-month month day-of-week), 6
    (seconds first), 7 (seconds first, a year last) or an alias (``@daily``...); raises
    :class:`ConfigError` naming what is wrong otherwise (see :mod:`zart_es.core._cron`).
    Hashed and random fields (``H``, ``R``) are refused: every scheduler must compute the
    same occurrences."""
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigError(f"cron expression must be a non-empty string, got {expr!r}")
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() not in CRON_ALIASES:
            raise ConfigError(f"unknown cron alias {text!r}; use one of "
                              f"{', '.join(sorted(CRON_ALIASES))}")
    else:
        fields = _CRON_FIELD.findall(text)
        if len(fields) not in (5, 6, 7):
            raise ConfigError(f"cron expression {text!r} has {len(fields)} fields: use 5 "
                              "(minute hour day-of-month month day-of-week), 6 (second "
                              "minute hour day-of-month month day-of-week) or 7 (... year)")
        text = " ".join(fields)
        for field in fields:
            if any(_HASHED_FIELD.fullmatch(part) for part in field.split(",")):
                raise ConfigError(f"cron expression {text!r}: hashed and random fields "
                                  "(H, R) are not supported")
    try:
        first = _Cron(text, "UTC", 1_767_225_600_000, syntax).next()  # 2026-01-01
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise ConfigError(f"invalid cron expression {text!r}: {exc}") from None
    if first is None:
        raise ConfigError(f"cron expression {text!r} never fires")
    return text


def check_timezone(timezone: object) -> str:
    """An IANA time zone name zoneinfo knows (``"Europe/Berlin"``); else ConfigError."""
    if not isinstance(timezone, str) or not timezone:
        raise ConfigError(f"time zone must be an IANA name like 'Europe/Berlin', got "
                          f"{timezone!r}")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ConfigError(f"unknown time zone {timezone!r}") from None
    return timezone


def check_id_template(template: object, name: str, workflow: str) -> str:
    """An id template using ``{occurrence}`` and only the fields ``{schedule}``,
    ``{occurrence}``, ``{workflow}`` (no format specs), whose ids are valid execution ids."""
    if not isinstance(template, str):
        raise ConfigError(f"id template must be a string, got {template!r}")
    try:
        parts = builtins.list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"invalid id template {template!r}: {exc}") from None
    used = set()
    for _literal, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in TEMPLATE_FIELDS or spec or conversion:
            raise ConfigError(f"id template {template!r}: use only {{schedule}}, "
                              "{occurrence} and {workflow}, without format specs")
        used.add(field)
    if "occurrence" not in used:
        raise ConfigError(f"id template {template!r} must contain {{occurrence}}: each "
                          "occurrence needs its own execution id")
    sample = template.format(schedule=name, workflow=workflow, occurrence=_SAMPLE_OCCURRENCE)
    try:
        check_execution_id(sample)
    except InvalidExecutionId as exc:
        raise ConfigError(f"id template {template!r} renders invalid execution ids such as "
                          f"{sample!r}: {exc}") from None
    return template


def check_schedule_name(name: object) -> str:
    """1-200 printable characters that are also a valid execution id; else ConfigError."""
    checked = check_workflow_name(name, what="schedule name")
    try:
        check_execution_id(checked)
    except InvalidExecutionId:
        raise ConfigError(f"schedule name {checked!r} must be usable in an execution id: "
                          "characters from A-Z a-z 0-9 . _ : @ = + -, starting with a "
                          "letter or digit") from None
    return checked


def check_every(every: Duration) -> int:
    """An interval of whole seconds, at least 1 s; returns ms. ConfigError otherwise."""
    ms = to_ms(every)
    if ms < 1000:
        raise ConfigError(f"every must be at least 1s, got {format_ms(ms)}")
    if ms % 1000:
        raise ConfigError(f"every must be a whole number of seconds, got {format_ms(ms)}")
    return ms


def build_schedule(
    name: str,
    workflow: str,
    payload: bytes,
    *,
    cron: str | None,
    every: Duration | None,
    timezone: str,
    overlap: str,
    id_template: str,
    anchor: str = "epoch",
) -> Schedule:
    """Check every setting and build the definition (``created_ms`` 0); a bad setting
    raises :class:`ConfigError` naming it."""
    check_schedule_name(name)
    check_workflow_name(workflow)
    if (cron is None) == (every is None):
        raise ConfigError("give exactly one of cron or every")
    if anchor not in EVERY_ANCHORS:
        raise ConfigError(f"unknown anchor {anchor!r}; use one of {', '.join(EVERY_ANCHORS)}")
    if cron is not None and anchor != "epoch":
        raise ConfigError("anchor applies to every schedules only; a cron expression says "
                          "when it fires")
    cron_text = check_cron(cron) if cron is not None else ""
    every_ms = 0
    if every is not None:
        every_ms = check_every(every)
        if timezone != "UTC":
            raise ConfigError("timezone applies to cron schedules only; every counts "
                              "from the Unix epoch")
    check_timezone(timezone)
    if overlap not in OVERLAP_POLICIES:
        raise ConfigError(f"unknown overlap policy {overlap!r}; use one of "
                          f"{', '.join(OVERLAP_POLICIES)}")
    check_id_template(id_template, name, workflow)
    return Schedule(name=name, workflow=workflow, input=payload, cron=cron_text,
                    every_ms=every_ms, timezone=timezone, overlap=overlap,
                    id_template=id_template, cron_syntax=SECONDS_FIRST, anchor=anchor)


def check_stored(schedule: Schedule) -> Schedule:
    """A definition read from Redis, held to the checks of :func:`build_schedule` (anyone
    with write access may have written it): ConfigError naming what no check would pass,
    so a hostile ``every_ms`` of 1 cannot make a scheduler spin. One stored before 6-field
    expressions were read seconds first comes back migrated (:func:`migrated`)."""
    schedule = migrated(schedule)
    build_schedule(
        schedule.name, schedule.workflow, schedule.input,
        cron=schedule.cron or None,
        every=timedelta(milliseconds=schedule.every_ms) if schedule.every_ms else None,
        timezone=schedule.timezone, overlap=schedule.overlap,
        id_template=schedule.id_template, anchor=schedule.anchor)
    if schedule.created_ms < 0:
        raise ConfigError(f"created_ms {schedule.created_ms} is negative")
    return schedule


MIGRATION_CHECK = 50
"""Occurrences compared between a stored seconds-last expression and its migration."""


def migrated(schedule: Schedule) -> Schedule:
    """``schedule`` with a 6-field ``cron`` stored seconds last (``cron_syntax`` 0)
    rewritten seconds first, checked to fire at the same instants (the next
    MIGRATION_CHECK after its creation); ConfigError, naming the schedule, when it cannot
    be: it is refused, never read the new way."""
    if schedule.cron_syntax == SECONDS_FIRST:
        return schedule
    text = schedule.cron
    if len(text.split()) == 6:
        try:
            text = migrate_seconds_last(schedule.cron)
            start = max(schedule.created_ms, 0)
            old = _Cron(schedule.cron, schedule.timezone, start, 0)
            new = _Cron(text, schedule.timezone, start, SECONDS_FIRST)
            same = all(old.next() == new.next() for _ in range(MIGRATION_CHECK))
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
            raise ConfigError(f"schedule {schedule.name!r}: its stored cron expression "
                              f"{schedule.cron!r} (seconds last) cannot be migrated: "
                              f"{exc}") from None
        if not same:
            raise ConfigError(f"schedule {schedule.name!r}: its stored cron expression "
                              f"{schedule.cron!r} (seconds last) has no seconds-first "
                              f"equal ({text!r} fires at other times); redefine it")
    return msgspec.structs.replace(schedule, cron=text, cron_syntax=SECONDS_FIRST)


class ScheduleSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A schedule declared in code (:func:`zart_es.schedule`), applied by every worker
    at start-up with :meth:`Schedules.ensure`."""

    name: str
    workflow: str
    data: Any = None
    cron: str | None = None
    every: Any = None
    timezone: str = "UTC"
    overlap: str = "skip"
    id_template: str = DEFAULT_ID_TEMPLATE
    anchor: str = "epoch"

    def settings(self) -> dict[str, Any]:
        """The arguments of :meth:`Schedules.add`."""
        return {f: getattr(self, f) for f in self.__struct_fields__}

    def check(self) -> ScheduleSpec:
        """Validate every setting now (at declaration), not first at a worker's start."""
        build_schedule(self.name, self.workflow, b"", cron=self.cron, every=self.every,
                       timezone=self.timezone, overlap=self.overlap,
                       id_template=self.id_template, anchor=self.anchor)
        return self


def cron_occurrences(expr: str, timezone: str, after_ms: int, n: int) -> builtins.list[int]:
    """The first ``n`` occurrences of ``expr`` (checked) in ``timezone`` strictly after
    ``after_ms``: what ``zart-es schedule next`` prints, computed as a schedule's are."""
    sample = Schedule(name="next", workflow="next", input=b"", cron=check_cron(expr),
                      timezone=check_timezone(timezone), cron_syntax=SECONDS_FIRST)
    return occurrences(sample, after_ms, n)


def schedule_to_dict(s: Schedule) -> dict[str, Any]:
    """The schedule as plain data for JSON (its input decoded)."""
    return {**msgspec.structs.asdict(s),
            "input": decode_value(s.input, Any, f"input of schedule {s.name!r}")}


def detail_json(s: Schedule) -> str:
    """The schedule's settings as JSON, for its audit entries."""
    return json.dumps({"workflow": s.workflow, "cron": s.cron, "every_ms": s.every_ms,
                       "anchor": s.anchor, "timezone": s.timezone, "overlap": s.overlap,
                       "id_template": s.id_template, "input_bytes": len(s.input)},
                      sort_keys=True)
