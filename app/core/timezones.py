"""IANA time zone names: the one check every domain uses for a client's, a court's or a
listing's zone."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones


@lru_cache(maxsize=1)
def zone_names() -> frozenset[str]:
    # The system's zone folder also holds files that are not IANA zone names
    # ("localtime" is this machine's own zone, whatever it is).
    return frozenset(name for name in available_timezones()
                     if name not in ("localtime", "posixrules", "Factory")
                     and not name.startswith(("posix/", "right/")))


def iana_zone(name: str | None) -> ZoneInfo:
    """The zone called ``name``; ValueError when it is not an IANA zone name."""
    if not name or name not in zone_names():
        raise ValueError("not an IANA time zone name")
    return ZoneInfo(name)
