"""One check for IANA zone names, used by clients, incidents, court dates and listings."""

from __future__ import annotations

import pytest

from app.core.timezones import iana_zone


@pytest.mark.parametrize("name", ["", None, "localtime", "posixrules", "Factory",
                                  "posix/Europe/London", "right/UTC", "Mars/Olympus",
                                  "../etc/passwd", " Europe/London"])
def test_names_that_are_not_iana_zones_are_refused(name) -> None:
    with pytest.raises(ValueError):
        iana_zone(name)


@pytest.mark.parametrize("name", ["UTC", "Europe/London", "America/Chicago",
                                  "Pacific/Auckland"])
def test_iana_zones_open(name) -> None:
    assert iana_zone(name).key == name
