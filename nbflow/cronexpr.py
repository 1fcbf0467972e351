"""Cron expressions: validated (croniter) with messages that say what is wrong, and converted to
systemd's ``OnCalendar=`` syntax.

Only the classic five fields are accepted (minute hour day-of-month month day-of-week, with ``*``,
lists, ranges, steps and month/day names) plus the ``@hourly``-style macros: that is what crontab,
systemd (after conversion), Airflow, Argo and Kubernetes all understand the same way.
"""

from __future__ import annotations

import zoneinfo

from croniter import croniter

FIELDS = ("minute", "hour", "day of month", "month", "day of week")
RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
          "@annually": "0 0 1 1 *"}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
SYSTEMD_DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


class ScheduleError(ValueError):
    """A schedule (cron expression, time zone) that cannot be used."""


def check_cron(expr: str) -> str:
    """The expression, normalized (single spaces); ``ScheduleError`` naming the bad part."""
    text = " ".join(expr.split())
    if text in MACROS:
        return text
    fields = text.split(" ")
    if len(fields) != 5:
        raise ScheduleError(
            f"cron expression {expr!r} has {len(fields)} field(s); it needs 5: minute hour "
            "day-of-month month day-of-week, e.g. '0 2 * * *' for 02:00 every day (or @daily)")
    for i, field in enumerate(fields):
        for item in field.split(","):
            try:
                _values(item, i)
            except ScheduleError as exc:
                raise ScheduleError(f"cron expression {expr!r}: {FIELDS[i]} field {field!r}: "
                                    f"{exc}") from None
    if not croniter.is_valid(text):
        raise ScheduleError(f"cron expression {expr!r} is not valid")
    return text


def check_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name!r}: use an IANA name such as "
                            "'Europe/Paris', 'America/New_York' or 'UTC'") from None
    return name


def _number(text: str, index: int) -> int:
    names = MONTHS if index == 3 else DAYS if index == 4 else []
    low, high = RANGES[index]
    if text.lower() in names:
        return names.index(text.lower()) + (1 if index == 3 else 0)
    if not text.isdigit():
        raise ScheduleError(f"{text!r} is not a number" + (f" or a name ({', '.join(names)})"
                                                           if names else ""))
    value = int(text)
    if not low <= value <= high:
        raise ScheduleError(f"{value} is outside {low}-{high}")
    return value


def _values(item: str, index: int) -> list[int]:
    """The values one list item of a field stands for."""
    low, high = RANGES[index]
    base, _, step_text = item.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) == 0:
            raise ScheduleError(f"step {step_text!r} must be a whole number > 0")
        step = int(step_text)
    if base == "*":
        start, end = low, high
    elif "-" in base:
        a, b = base.split("-", 1)
        start, end = _number(a, index), _number(b, index)
        if start > end:
            raise ScheduleError(f"range {base!r} runs backwards")
    else:
        start = _number(base, index)
        end = high if step_text else start
    return list(range(start, end + 1, step))


def to_systemd(expr: str) -> str:
    """``OnCalendar=`` value for a five-field cron expression (systemd.time(7))."""
    text = MACROS.get(expr, expr)
    minute, hour, dom, month, dow = text.split(" ")
    if dom != "*" and dow != "*":
        raise ScheduleError(
            f"cron expression {expr!r} restricts both the day of month and the day of week, "
            "which cron reads as either/or and systemd as both; split it into two schedules")

    def field(value: str, index: int) -> str:
        if value == "*":
            return "*"
        values = sorted({v for item in value.split(",") for v in _values(item, index)})
        return ",".join(f"{v:02d}" if index < 2 else str(v) for v in values)

    days = ""
    if dow != "*":
        days = ",".join(dict.fromkeys(SYSTEMD_DAYS[v] for item in dow.split(",")
                                      for v in _values(item, 4))) + " "
    return f"{days}*-{field(month, 3)}-{field(dom, 2)} {field(hour, 1)}:{field(minute, 0)}:00"
