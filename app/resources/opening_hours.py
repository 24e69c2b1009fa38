"""Opening hours: a weekly schedule in the resource's own time zone.

A range is a day and two local times; ``closes`` at or before ``opens`` runs past
midnight into the next day (Friday 22:00–06:00 is open on Saturday morning too), and
``24:00`` closes at midnight. For the database each schedule becomes intervals that
never cross midnight (:func:`intervals`), so "open at this moment" is, per time zone,
one comparison of the local weekday and minute (:func:`local_minute`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from app.core.timezones import iana_zone
from app.resources.models import DAYS, MINUTES_PER_DAY


@dataclass(frozen=True, order=True)
class Interval:
    day: int  # 0 = Monday
    opens: int  # minutes after local midnight
    closes: int


class HoursError(ValueError):
    """An invalid schedule; ``field`` is the path under ``opening_hours``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def zone(name: str) -> ZoneInfo:
    """The IANA time zone called ``name`` (HoursError if there is none)."""
    try:
        return iana_zone(name)
    except ValueError as exc:
        raise HoursError("time_zone", "not an IANA time zone name") from exc


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def intervals(hours: dict[str, Any] | None) -> list[Interval]:
    """The schedule as sorted, non-overlapping intervals within single days.

    ``hours`` is ``{"always_open": bool, "weekly": [{"day", "opens", "closes"}]}``; a
    HoursError names the offending range."""
    if not hours:
        return []
    weekly = hours.get("weekly") or []
    if hours.get("always_open"):
        if weekly:
            raise HoursError("weekly", "leave empty when always_open is true")
        return [Interval(day, 0, MINUTES_PER_DAY) for day in range(7)]
    found: list[tuple[Interval, int]] = []
    for index, item in enumerate(weekly):
        day = DAYS.index(item["day"])
        opens, closes = _minutes(item["opens"]), _minutes(item["closes"])
        if opens == closes:
            raise HoursError(f"weekly.{index}", "opens and closes are the same time; "
                             "use always_open, or 00:00 to 24:00 for a whole day")
        if closes > opens:
            found.append((Interval(day, opens, closes), index))
        else:  # past midnight: the rest of this day, then the next morning
            found.append((Interval(day, opens, MINUTES_PER_DAY), index))
            if closes > 0:
                found.append((Interval((day + 1) % 7, 0, closes), index))
    found.sort()
    for (before, _), (after, index) in zip(found, found[1:], strict=False):
        if after.day == before.day and after.opens < before.closes:
            raise HoursError(f"weekly.{index}", "overlaps another range on "
                             f"{DAYS[after.day]}")
    return [interval for interval, _ in found]


def local_minute(moment: datetime, time_zone: str) -> tuple[int, int]:
    """(weekday, minute of the day) of ``moment`` on the clocks of ``time_zone``."""
    local = moment.astimezone(ZoneInfo(time_zone))
    return local.weekday(), local.hour * 60 + local.minute


def is_open(hours: dict[str, Any] | None, time_zone: str, moment: datetime) -> bool | None:
    """Whether a schedule is open at ``moment`` (None when the hours are not known)."""
    if not hours:
        return None
    if hours.get("always_open"):
        return True
    day, minute = local_minute(moment, time_zone)
    yesterday = (day - 1) % 7
    for item in hours.get("weekly") or ():
        opens, closes = _minutes(item["opens"]), _minutes(item["closes"])
        on = DAYS.index(item["day"])
        if closes > opens:
            if on == day and opens <= minute < closes:
                return True
        elif (on == day and minute >= opens) or (on == yesterday and minute < closes):
            return True  # a range past midnight: its evening, or the next morning
    return False


def describe(hours: dict[str, Any] | None) -> str:
    """The schedule as one line of text (the CSV form): ``24/7`` or
    ``mon 09:00-17:00; fri 22:00-06:00``; empty when not known."""
    if not hours:
        return ""
    if hours.get("always_open"):
        return "24/7"
    return "; ".join(f"{item['day']} {item['opens']}-{item['closes']}"
                     for item in hours.get("weekly") or [])


def parse(text: str) -> tuple[bool, list[dict[str, str]]]:
    """The CSV form back to (always_open, weekly ranges); ``mon-fri 09:00-17:00`` names
    several days at once. A ValueError says what is wrong."""
    text = text.strip()
    if text.lower() in ("24/7", "24x7", "always"):
        return True, []
    weekly: list[dict[str, str]] = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        pieces = part.split()
        if len(pieces) != 2 or "-" not in pieces[1]:
            raise ValueError(f"'{part[:40]}' is not like 'mon 09:00-17:00'")
        days_text, times = pieces[0].lower(), pieces[1]
        opens, _, closes = times.partition("-")
        first, _, last = days_text.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"'{days_text[:20]}' is not a day (mon … sun)")
        start, end = DAYS.index(first), DAYS.index(last or first)
        span = [DAYS[(start + k) % 7] for k in range((end - start) % 7 + 1)]
        weekly.extend({"day": day, "opens": opens, "closes": closes} for day in span)
    return False, weekly
