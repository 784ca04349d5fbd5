"""Cron expressions in Zart's dialect and the classic one, read into one form croniter runs.

* 5 fields (``minute hour day-of-month month day-of-week``): the classic crontab, day of
  week 0-7 (0 and 7 are Sunday), read as croniter reads it.
* 6 fields: **seconds first**, as Zart (the ``cron`` crate), Quartz and Spring read them:
  ``second minute hour day-of-month month day-of-week``; 7 fields add a ``year``. Day of
  week is 1-7 with 1 = Sunday (or ``SUN``-``SAT``); ``?`` stands for "any" in either day
  field; ``L``/``nW`` in day of month and ``n#k`` in day of week; when both day fields
  are restricted, a day must match both (as the ``cron`` crate does).

Every field of a 6- or 7-field expression is checked on its own, so an error names the
field. Schedules stored before the seconds-first reading (a 6-field expression with the
seconds last) are migrated by :func:`migrate_seconds_last` to the expression that fires
at the same instants, never read the new way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zart_es.core._errors import ConfigError

SECONDS_FIRST = 1
"""``Schedule.cron_syntax`` of definitions whose 6- and 7-field expressions are read
seconds first (every definition written since); 0: stored before, seconds last."""

_DAY_NAMES = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_MONTH_NAMES = {m: i + 1 for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"))}
_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23),
           ("day-of-month", 1, 31), ("month", 1, 12), ("day-of-week", 1, 7),
           ("year", 1970, 2099))
_VALUE = re.compile(r"[0-9]+|[A-Za-z]{3}")


@dataclass(frozen=True, slots=True)
class CronForm:
    """What croniter runs for an expression: its text, whether seconds come first, how
    the two day fields combine, and the years allowed (None: any)."""

    expr: str
    seconds_first: bool = False
    day_or: bool = True
    years: frozenset[int] | None = None


def cron_form(text: str, syntax: int = SECONDS_FIRST) -> CronForm:
    """The croniter form of a checked-shape expression (see the module docstring);
    ConfigError naming the field that is wrong. ``syntax`` 0 reads 6 fields seconds last
    (stored definitions from before; use :func:`migrate_seconds_last`)."""
    fields = text.split()
    if text.startswith("@") or len(fields) == 5:
        return CronForm(text)
    if len(fields) == 6 and syntax != SECONDS_FIRST:
        return CronForm(text)
    if len(fields) not in (6, 7):
        raise ConfigError(f"cron expression {text!r} has {len(fields)} fields: use 5 (minute "
                          "hour day-of-month month day-of-week), 6 (second minute hour "
                          "day-of-month month day-of-week) or 7 (... year)")
    parts = [_Field(text, name, lo, hi, field).read()
             for (name, lo, hi), field in zip(_FIELDS[:6], fields, strict=False)]
    years = _years(_Field(text, "year", 1970, 2099, fields[6])) if len(fields) == 7 else None
    day_or = fields[3] in ("*", "?") or fields[5] in ("*", "?")
    return CronForm(" ".join(parts[:6]), seconds_first=True, day_or=day_or, years=years)


@dataclass(frozen=True, slots=True)
class _Field:
    """One field of an expression being read: the whole text, its name, range, text."""

    text: str
    name: str
    lo: int
    hi: int
    field: str

    def read(self) -> str:
        """The field, checked, as croniter reads it (day of week: 0-6, Sunday 0)."""
        out = []
        for part in self.field.split(","):
            base, slash, step = part.partition("/")
            if slash and not (step.isdigit() and int(step) > 0):
                raise self.bad(f"step {step!r} is not a positive number")
            read = self.part(base)
            collapsed = "-" in base and "-" not in read  # "a-a": one value, no step
            out.append(read + (f"/{step}" if slash and not collapsed else ""))
        return ",".join(out)

    def part(self, base: str) -> str:
        name = self.name
        if base in ("*", "?"):
            if base == "?" and name not in ("day-of-month", "day-of-week"):
                raise self.bad("'?' stands only for a day field")
            return "*"
        if name == "day-of-month" and (base == "L" or re.fullmatch(r"[0-9]+W", base)):
            if base != "L":
                self.number(base[:-1])
            return base
        if name == "day-of-week":
            return self.weekdays(base)
        first, dash, last = base.partition("-")
        names = _MONTH_NAMES if name == "month" else {}
        a = self.number(first, names)
        if not dash:
            return base
        b = self.number(last, names)
        if b < a:
            raise self.bad(f"range {base!r} runs backwards")
        return first if a == b else base  # croniter reads "a-a" as the whole field

    def weekdays(self, base: str) -> str:
        if base.endswith("L"):
            raise self.bad("'L' (the last such weekday) is not supported")
        day, hash_, nth = base.partition("#")
        if hash_:
            if not (nth.isdigit() and 1 <= int(nth) <= 5):
                raise self.bad(f"'#{nth}' must name the 1st to 5th weekday")
            return f"{self.weekday(day)}#{nth}"
        first, dash, last = base.partition("-")
        a = self.weekday(first)
        if not dash:
            return a
        b = self.weekday(last)
        if int(b) < int(a):
            raise self.bad(f"range {base!r} runs backwards")
        return a if a == b else f"{a}-{b}"  # croniter reads "a-a" as any day

    def number(self, value: str, names: dict[str, int] | None = None) -> int:
        if not _VALUE.fullmatch(value):
            raise self.bad(f"{value!r} is not a number")
        number = (names or {}).get(value.upper()) if not value.isdigit() else int(value)
        if number is None or not self.lo <= number <= self.hi:
            raise self.bad(f"{value!r} is outside {self.lo}-{self.hi}")
        return number

    def weekday(self, value: str) -> str:
        """A day of week, 1-7 or SUN-SAT (1 = Sunday), as croniter's 0-6."""
        return str(self.number(value, _DAY_NAMES) - 1)

    def bad(self, why: str) -> ConfigError:
        return ConfigError(f"cron expression {self.text!r}: the {self.name} field "
                           f"{self.field!r}: {why}")


def _years(year: _Field) -> frozenset[int] | None:
    if year.field in ("*", "?"):
        return None
    years: set[int] = set()
    for part in year.field.split(","):
        base, slash, step = part.partition("/")
        if slash and not (step.isdigit() and int(step) > 0):
            raise year.bad(f"step {step!r} is not a positive number")
        first, dash, last = ("1970", "-", "2099") if base == "*" else base.partition("-")
        a = year.number(first)
        b = year.number(last) if dash else (2099 if slash else a)
        if b < a:
            raise year.bad(f"range {base!r} runs backwards")
        years.update(range(a, b + 1, int(step) if slash else 1))
    return frozenset(years)


def migrate_seconds_last(text: str) -> str:
    """The seconds-first expression of a 6-field one stored with its seconds last
    (``minute hour day month weekday second``, croniter's weekdays 0-7): the seconds field
    moves to the front and numeric weekdays become 1-7 (1 = Sunday). ConfigError when a
    weekday part has no seconds-first spelling (the caller refuses the definition)."""
    fields = text.split()
    if len(fields) != 6:
        return text
    minute, hour, dom, month, dow, second = fields
    if dom not in ("*", "?") and dow not in ("*", "?"):
        raise ConfigError(f"stored cron expression {text!r} (seconds last) restricts both "
                          "day fields, which it matched as either/or and the seconds-first "
                          "reading matches as both; redefine the schedule "
                          "(schedule add --replace)")
    return " ".join((second, minute, hour, dom, month, _quartz_weekdays(text, dow)))


def _quartz_weekdays(text: str, field: str) -> str:
    out = []
    for part in field.split(","):
        base, slash, step = part.partition("/")
        first, dash, last = base.partition("-")
        if base == "*":
            out.append(part)
            continue
        if not (first.isdigit() and (not dash or last.isdigit())):
            if _VALUE.fullmatch(first) and (not dash or _VALUE.fullmatch(last)):
                out.append(part)  # names: the same in both readings
                continue
            raise ConfigError(f"stored cron expression {text!r} (seconds last): its "
                              f"day-of-week part {part!r} has no seconds-first spelling; "
                              "redefine the schedule (schedule add --replace)")
        a = int(first) % 7 + 1
        b = int(last) % 7 + 1 if dash else None
        if b is not None and b < a:  # 0-7 style ranges through Sunday: spell them out
            if slash:
                raise ConfigError(f"stored cron expression {text!r} (seconds last): its "
                                  f"day-of-week part {part!r} has no seconds-first "
                                  "spelling; redefine the schedule (schedule add --replace)")
            out.append(",".join(str(d % 7 + 1) for d in range(int(first), int(last) + 1)))
            continue
        out.append(f"{a}" + (f"-{b}" if b is not None else "") + (f"/{step}" if slash else ""))
    return ",".join(out)
