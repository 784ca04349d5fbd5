"""Cron as Zart reads it (issue 22): 6 fields seconds first, 7 with a year, weekdays 1-7
with 1 = Sunday, both day fields matched together; classic 5-field expressions as before;
stored seconds-last expressions migrated to what fires at the same instants."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from zart_es import Client, ConfigError
from zart_es.core import Schedule, check_stored, cron_occurrences
from zart_es.core._cron import migrate_seconds_last
from zart_es.engine import Scheduler
from zart_es.ops import Schedules

from .helpers import ROOT

pytestmark = pytest.mark.pure

START = datetime(2026, 12, 7, tzinfo=UTC)  # a Monday


def _next(expr: str, n: int = 3, tz: str = "UTC", after: datetime = START) -> list[str]:
    return [datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S %a")
            for ms in cron_occurrences(expr, tz, int(after.timestamp() * 1000), n)]


# expressions from Zart's and the cron crate's documentation, and what they fire at
ZART_EXAMPLES = [
    ("0 */5 * * * *", ["2026-12-07 00:05:00 Mon", "2026-12-07 00:10:00 Mon",
                       "2026-12-07 00:15:00 Mon"]),
    ("0 2,14,26 * * * *", ["2026-12-07 00:02:00 Mon", "2026-12-07 00:14:00 Mon",
                           "2026-12-07 00:26:00 Mon"]),
    ("0 0 6 * * Sun,Sat", ["2026-12-12 06:00:00 Sat", "2026-12-13 06:00:00 Sun",
                           "2026-12-19 06:00:00 Sat"]),
    ("0 0 6 * * 1", ["2026-12-13 06:00:00 Sun", "2026-12-20 06:00:00 Sun",
                     "2026-12-27 06:00:00 Sun"]),  # 1 = Sunday, as in the cron crate
    ("0 0 9 * * 2-6", ["2026-12-07 09:00:00 Mon", "2026-12-08 09:00:00 Tue",
                       "2026-12-09 09:00:00 Wed"]),
    ("0 0 9 * * MON-FRI", ["2026-12-07 09:00:00 Mon", "2026-12-08 09:00:00 Tue",
                           "2026-12-09 09:00:00 Wed"]),
    ("0 0 * 5-10 * *", ["2026-12-07 01:00:00 Mon", "2026-12-07 02:00:00 Mon",
                        "2026-12-07 03:00:00 Mon"]),  # hourly on the 5th to the 10th
    ("1/10 * * * * *", ["2026-12-07 00:00:01 Mon", "2026-12-07 00:00:11 Mon",
                        "2026-12-07 00:00:21 Mon"]),
    ("0 30 12 L * ?", ["2026-12-31 12:30:00 Thu", "2027-01-31 12:30:00 Sun",
                       "2027-02-28 12:30:00 Sun"]),
    ("0 0 12 1W * *", ["2027-01-01 12:00:00 Fri", "2027-02-01 12:00:00 Mon",
                       "2027-03-01 12:00:00 Mon"]),
    ("0 0 12 ? * 6#3", ["2026-12-18 12:00:00 Fri", "2027-01-15 12:00:00 Fri",
                        "2027-02-19 12:00:00 Fri"]),  # the third Friday
    ("0 0 12 15 * 2", ["2027-02-15 12:00:00 Mon", "2027-03-15 12:00:00 Mon",
                       "2027-11-15 12:00:00 Mon"]),  # both day fields must match
    ("0 0 0 1 1 ? 2027-2031/2", ["2027-01-01 00:00:00 Fri", "2029-01-01 00:00:00 Mon",
                                 "2031-01-01 00:00:00 Wed"]),
    ("0 0 2 * * *", ["2026-12-07 02:00:00 Mon", "2026-12-08 02:00:00 Tue",
                     "2026-12-09 02:00:00 Wed"]),
    # the classic five fields are read as before: 1 = Monday there
    ("0 6 * * 1", ["2026-12-07 06:00:00 Mon", "2026-12-14 06:00:00 Mon",
                   "2026-12-21 06:00:00 Mon"]),
]


@pytest.mark.parametrize(("expr", "expected"), ZART_EXAMPLES)
def test_zart_documented_examples(expr: str, expected: list[str]) -> None:
    assert _next(expr) == expected


def test_a_year_field_ends_a_schedule_and_dst_zones_keep_local_time() -> None:
    assert _next("0 0 0 1 1 * 2028", 3) == ["2028-01-01 00:00:00 Sat"]
    # Berlin: 02:00 local is 01:00 UTC in winter, 00:00 UTC in summer
    assert _next("0 0 2 * * *", 1, "Europe/Berlin") == ["2026-12-07 01:00:00 Mon"]
    assert _next("0 0 2 * * *", 1, "Europe/Berlin", datetime(2026, 6, 30, 12, tzinfo=UTC)) == [
        "2026-07-01 00:00:00 Wed"]
    # the spring-forward night has no 02:30: that day it fires at the gap's end
    spring = _next("0 30 2 * * *", 3, "Europe/Berlin", datetime(2026, 3, 28, tzinfo=UTC))
    assert spring == ["2026-03-28 01:30:00 Sat", "2026-03-29 01:00:00 Sun",
                      "2026-03-30 00:30:00 Mon"]


@pytest.mark.parametrize(("expr", "message"), [
    ("0 */5 * * * 0", "the day-of-week field '0': '0' is outside 1-7"),
    ("0 61 * * * *", "the minute field '61': '61' is outside 0-59"),
    ("0 0 24 * * *", "the hour field '24': '24' is outside 0-23"),
    ("0 0 0 32 * *", "the day-of-month field '32': '32' is outside 1-31"),
    ("0 0 0 * 13 *", "the month field '13': '13' is outside 1-12"),
    ("0 0 * * * 6L", "the day-of-week field '6L': 'L' (the last such weekday)"),
    ("? 0 0 * * *", "the second field '?': '?' stands only for a day field"),
    ("0 0 0 1 1 * 1960", "the year field '1960': '1960' is outside 1970-2099"),
    ("0 0 5-2 * * *", "the hour field '5-2': range '5-2' runs backwards"),
    ("0 0 0 * * 2#6", "the day-of-week field '2#6': '#6' must name the 1st to 5th"),
    ("*/0 * * * * *", "the second field '*/0': step '0' is not a positive number"),
    ("0 0 0 * * * * *", "has 8 fields"),
    ("0 0 0 1 1 * 2020", "never fires"),
])
def test_errors_name_the_field(expr: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _next(expr)


# -- a reference: every second of a range, matched field by field --------------------------

def _values(field: str, lo: int, hi: int) -> set[int]:
    out: set[int] = set()
    for part in field.split(","):
        base, _, step = part.partition("/")
        if base in ("*", "?"):
            a, b = lo, hi
        elif "-" in base:
            a, b = (int(x) for x in base.split("-"))
        else:
            a = int(base)
            b = hi if step else a
        out.update(range(a, b + 1, int(step) if step else 1))
    return out


def _reference(expr: str, after: datetime, n: int) -> list[int]:
    sec, minute, hour, dom, month, dow = expr.split()
    seconds = sorted(_values(sec, 0, 59))
    allowed = (_values(minute, 0, 59), _values(hour, 0, 23), _values(dom, 1, 31),
               _values(month, 1, 12), {d % 7 for d in _values(dow, 1, 7)})  # 1=Sun -> 1%7
    found: list[int] = []
    t = after.replace(second=0)
    while len(found) < n and t < after + timedelta(days=400):
        weekday = (t.isoweekday() % 7) + 1  # Sunday 1 ... Saturday 7
        if (t.minute in allowed[0] and t.hour in allowed[1] and t.day in allowed[2]
                and t.month in allowed[3] and weekday % 7 in allowed[4]):
            found += [int((t + timedelta(seconds=s)).timestamp() * 1000) for s in seconds
                      if t + timedelta(seconds=s) > after][: n - len(found)]
        t += timedelta(minutes=1)
    return found


def _field(lo: int, hi: int) -> st.SearchStrategy[str]:
    number = st.integers(lo, hi)
    single = number.map(str)
    ranged = st.tuples(number, number).map(lambda p: f"{min(p)}-{max(p)}")
    stepped = st.tuples(st.sampled_from(["*", str(lo)]), st.integers(1, 7)).map(
        lambda p: f"{p[0]}/{p[1]}")
    ranged_step = st.tuples(number, number, st.integers(1, 5)).map(
        lambda p: f"{min(p[:2])}-{max(p[:2])}/{p[2]}")
    part = st.one_of(single, ranged, stepped, ranged_step)
    return st.one_of(st.just("*"), st.lists(part, min_size=1, max_size=3).map(",".join))


@settings(max_examples=60, deadline=None)
@given(fields=st.tuples(_field(0, 59), _field(0, 59), _field(0, 23),
                        st.one_of(st.just("*"), _field(1, 28)), st.just("*"),
                        st.one_of(st.just("?"), _field(1, 7))),
       after=st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31)))
def test_seconds_first_matches_a_field_by_field_reference(
    fields: tuple[str, ...], after: datetime
) -> None:
    expr = " ".join(fields)
    start = after.replace(microsecond=0, tzinfo=UTC)
    ours = cron_occurrences(expr, "UTC", int(start.timestamp() * 1000), 3)
    assert ours == _reference(expr, start, 3)[: len(ours)]
    assert ours  # every generated expression fires within the year


# -- stored seconds-last expressions ------------------------------------------------------

@pytest.mark.parametrize(("stored", "migrated"), [
    ("*/5 * * * * 30", "30 */5 * * * *"),
    ("0 12 * * 1-5 0", "0 0 12 * * 2-6"),
    ("0 12 * * 5-7 0", "0 0 12 * * 6,7,1"),
    ("0 12 * * mon,fri 15", "15 0 12 * * mon,fri"),
    ("0 12 * * 1/2 0", "0 0 12 * * 2/2"),
])
def test_a_stored_seconds_last_expression_migrates_to_the_same_instants(
    stored: str, migrated: str
) -> None:
    assert migrate_seconds_last(stored) == migrated
    legacy = Schedule(name="old", workflow="w", input=b"\xc0", cron=stored,
                      created_ms=1_767_225_600_000)  # stored without cron_syntax
    now = check_stored(legacy)  # compares 50 occurrences of both readings
    assert (now.cron, now.cron_syntax) == (migrated, 1)


@pytest.mark.parametrize(("stored", "message"), [
    ("0 12 1 * 1 0", "restricts both day fields"),
    ("0 12 * * 5-7/2 0", "has no seconds-first spelling"),
])
def test_a_stored_expression_that_cannot_migrate_is_refused(stored: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_stored(Schedule(name="old", workflow="w", input=b"\xc0", cron=stored))


@pytest.mark.redis
async def test_the_scheduler_runs_a_stored_seconds_last_schedule_at_its_old_instants(
    redis_url: str, redis: Redis
) -> None:
    async with Client(redis_url) as client:
        # as 0.3 stored it: no cron_syntax field, seconds last
        stored = {"name": "legacy", "workflow": "report", "input": b"\xc0",
                  "cron": "*/5 * * * * 30", "every_ms": 0, "timezone": "UTC",
                  "overlap": "skip", "id_template": "{schedule}-{occurrence}",
                  "paused": False, "created_ms": 1_767_225_600_000}
        await redis.hset(client.keys.schedules(), "legacy", msgspec.msgpack.encode(stored))
        due = 1_767_225_600_000 + 30_000  # 00:00:30: minute 0 of */5, second 30
        assert await Scheduler(client).tick(now_ms=due) == ["legacy-20260101T000030Z"]
        shown = await Schedules(client).get("legacy")
        assert (shown.cron, shown.cron_syntax) == ("*/5 * * * * 30", 0)  # as stored


def test_schedule_next_prints_utc_instants() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "zart_es", "schedule", "next", "0 0 2 * * *", "--count", "2",
         "--after", "2026-12-07T00:00:00", "--tz", "Europe/Berlin"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2026-12-07T01:00:00Z", "2026-12-08T01:00:00Z"]
    bad = subprocess.run([sys.executable, "-m", "zart_es", "schedule", "next",
                          "0 */5 * * * 0"], cwd=ROOT, capture_output=True, text=True,
                         timeout=30, check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip() == ("zart-es: error: cron expression '0 */5 * * * 0': the "
                                  "day-of-week field '0': '0' is outside 1-7")
