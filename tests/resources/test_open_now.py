"""Open now: each resource on its own clock, overnight ranges, 24/7, and daylight saving,
always against fixed clocks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import Session

from app.core.pagination import PageParams
from app.resources import opening_hours, service
from app.resources.models import Resource
from app.resources.opening_hours import Interval
from tests.resources.factories import Directory, ids, make_resource

URL = "/api/v1/resources"
# Friday 2 January 2026 … Monday 5 January 2026 (winter: Dublin on UTC, New York UTC-5).
FRIDAY_2330_UTC = datetime(2026, 1, 2, 23, 30, tzinfo=UTC)
SATURDAY_0500_UTC = datetime(2026, 1, 3, 5, 0, tzinfo=UTC)
SATURDAY_0700_UTC = datetime(2026, 1, 3, 7, 0, tzinfo=UTC)


def weekly(*ranges: tuple[str, str, str], zone: str = "Europe/Dublin") -> dict:
    return {"time_zone": zone, "always_open": False,
            "weekly": [{"day": d, "opens": o, "closes": c} for d, o, c in ranges]}


def schedule(*ranges: tuple[str, str, str]) -> dict:
    return {"always_open": False,
            "weekly": [{"day": d, "opens": o, "closes": c} for d, o, c in ranges]}


# --- the schedule itself ------------------------------------------------------------------


def test_an_overnight_range_is_split_at_midnight() -> None:
    assert opening_hours.intervals(schedule(("fri", "22:00", "06:00"))) == [
        Interval(4, 22 * 60, 24 * 60), Interval(5, 0, 6 * 60)]
    # Sunday night wraps into Monday morning.
    assert opening_hours.intervals(schedule(("sun", "20:00", "02:30"))) == [
        Interval(0, 0, 150), Interval(6, 20 * 60, 24 * 60)]
    # Closing at midnight, written either way, has no next-day part.
    assert opening_hours.intervals(schedule(("mon", "18:00", "24:00"))) == \
        opening_hours.intervals(schedule(("mon", "18:00", "00:00"))) == [
            Interval(0, 18 * 60, 24 * 60)]


def test_always_open_is_every_minute_of_the_week() -> None:
    hours = {"always_open": True, "weekly": []}
    assert opening_hours.intervals(hours) == [Interval(d, 0, 1440) for d in range(7)]
    for moment in (FRIDAY_2330_UTC, SATURDAY_0500_UTC, datetime(2026, 3, 29, 1, 30, tzinfo=UTC)):
        assert opening_hours.is_open(hours, "Pacific/Auckland", moment) is True


def test_unknown_hours_are_neither_open_nor_closed() -> None:
    assert opening_hours.is_open(None, "UTC", FRIDAY_2330_UTC) is None


@pytest.mark.parametrize(("moment", "expected"), [
    (datetime(2026, 1, 2, 21, 59, tzinfo=UTC), False),  # Friday 21:59 in Dublin
    (datetime(2026, 1, 2, 22, 0, tzinfo=UTC), True),  # opens on the minute
    (FRIDAY_2330_UTC, True),
    (SATURDAY_0500_UTC, True),  # past midnight, still the Friday night shift
    (datetime(2026, 1, 3, 6, 0, tzinfo=UTC), False),  # closes on the minute
    (datetime(2026, 1, 3, 23, 0, tzinfo=UTC), False),  # Saturday night: no shift
])
def test_overnight_hours(moment: datetime, expected: bool) -> None:
    assert opening_hours.is_open(schedule(("fri", "22:00", "06:00")), "Europe/Dublin",
                                 moment) is expected


def test_daylight_saving_moves_the_utc_hours() -> None:
    hours = schedule(*[(d, "09:00", "17:00") for d in ("mon", "tue", "wed", "thu", "fri")])
    # 08:30 UTC is 08:30 in Dublin in winter (closed) but 09:30 in summer (open).
    assert opening_hours.is_open(hours, "Europe/Dublin",
                                 datetime(2026, 1, 5, 8, 30, tzinfo=UTC)) is False
    assert opening_hours.is_open(hours, "Europe/Dublin",
                                 datetime(2026, 7, 6, 8, 30, tzinfo=UTC)) is True


def test_the_csv_form_of_hours_round_trips() -> None:
    always, ranges = opening_hours.parse("mon-wed 09:00-17:00; fri 22:00-06:00")
    assert not always and [r["day"] for r in ranges] == ["mon", "tue", "wed", "fri"]
    assert opening_hours.describe({"always_open": False, "weekly": ranges}) == (
        "mon 09:00-17:00; tue 09:00-17:00; wed 09:00-17:00; fri 22:00-06:00")
    assert opening_hours.parse("24/7") == (True, [])
    assert opening_hours.parse("sat-mon 10:00-12:00")[1][-1]["day"] == "mon"  # wraps
    with pytest.raises(ValueError):
        opening_hours.parse("weekdays nine to five")


# --- in the directory ---------------------------------------------------------------------


@pytest.fixture
def clocks(db: Session, directory: Directory) -> dict[str, Resource]:
    """Four listings on different clocks."""
    actor = directory.actor("supervisor")
    made = {
        "dublin_night": make_resource(db, actor, name="Example Night Shelter",
                                      opening_hours=weekly(("fri", "22:00", "06:00"))),
        "new_york_day": make_resource(db, actor, name="Example Hudson Legal Clinic",
                                      categories=["legal_aid"],
                                      opening_hours=weekly(("fri", "09:00", "19:00"),
                                                           zone="America/New_York")),
        "always": make_resource(db, actor, name="Example Always Hotline",
                                categories=["hotline"]),
        "unknown": make_resource(db, actor, name="Example Unknown Hours Service",
                                 categories=["other"], opening_hours=None),
    }
    db.commit()
    return made


def open_at(db: Session, directory: Directory, moment: datetime) -> set:
    rows, _ = service.search(db, directory.actor("advocate"),
                             service.DirectoryFilters(open_at=moment), PageParams(50, None))
    return {r.id for r in rows}


def test_open_at_is_evaluated_in_each_resources_time_zone(db: Session, directory: Directory,
                                                          clocks) -> None:
    c = {name: r.id for name, r in clocks.items()}
    # Friday 23:30 UTC: night shelter open in Dublin; 18:30 in New York, the clinic too.
    assert open_at(db, directory, FRIDAY_2330_UTC) == {c["dublin_night"], c["new_york_day"],
                                                       c["always"]}
    # Saturday 05:00 UTC: the night shelter is still open (overnight); New York is
    # at 00:00 on Saturday, closed.
    assert open_at(db, directory, SATURDAY_0500_UTC) == {c["dublin_night"], c["always"]}
    assert open_at(db, directory, SATURDAY_0700_UTC) == {c["always"]}


def test_open_now_uses_the_clock_at_request_time(client, db: Session, directory: Directory,
                                                 clocks, monkeypatch) -> None:
    c = {name: str(r.id) for name, r in clocks.items()}
    headers = directory.headers("reader")  # a partner app
    monkeypatch.setattr(service, "clock", lambda: SATURDAY_0500_UTC)
    response = client.get(URL, params={"open_now": "true"}, headers=headers)
    assert response.status_code == 200, response.text
    assert {item["id"] for item in response.json()["items"]} == {c["dublin_night"],
                                                                   c["always"]}
    assert all(item["open_now"] for item in response.json()["items"])
    everything = client.get(URL, headers=headers).json()["items"]
    state = {item["id"]: item["open_now"] for item in everything}
    assert state[c["new_york_day"]] is False and state[c["unknown"]] is None

    monkeypatch.setattr(service, "clock", lambda: FRIDAY_2330_UTC)
    response = client.get(URL, params={"open_now": "true", "category": "legal_aid"},
                          headers=headers)
    assert ids(response.json()) == {clocks["new_york_day"].id}


def test_open_at_takes_a_moment_with_its_offset(client, directory: Directory, clocks) -> None:
    headers = directory.headers("advocate")
    response = client.get(URL, params={"open_at": "2026-01-03T00:00:00-05:00"},  # Sat 05:00Z
                          headers=headers)
    assert response.status_code == 200, response.text
    assert ids(response.json()) == {clocks["dublin_night"].id,
                                    clocks["always"].id}
    naive = client.get(URL, params={"open_at": "2026-01-03T05:00:00"}, headers=headers)
    assert naive.status_code == 422


def test_a_changed_schedule_changes_open_now(db: Session, directory: Directory,
                                             clocks) -> None:
    from app.resources.schemas import ResourceUpdate

    night = clocks["dublin_night"]
    assert night.id in open_at(db, directory, SATURDAY_0500_UTC)
    service.update_resource(db, directory.actor("supervisor"), night.id,
                            ResourceUpdate(opening_hours=weekly(("sat", "08:00", "12:00"))))
    assert night.id not in open_at(db, directory, SATURDAY_0500_UTC)
    assert night.id in open_at(db, directory, SATURDAY_0700_UTC.replace(hour=9))


def test_the_answer_shown_agrees_with_the_intervals_searched() -> None:
    """``is_open`` (each listing's open_now) and the stored intervals ("open now" search)
    are two implementations of one rule: they must agree everywhere."""
    import random
    from datetime import timedelta

    rng = random.Random(2026)
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    checked = 0
    for _ in range(300):
        ranges = [(rng.choice(days), f"{rng.randrange(24):02d}:{rng.choice((0, 30)):02d}",
                   rng.choice(["24:00", f"{rng.randrange(24):02d}:{rng.choice((0, 30)):02d}"]))
                  for _ in range(rng.randint(1, 4))]
        hours = schedule(*ranges)
        try:
            found = opening_hours.intervals(hours)
        except opening_hours.HoursError:
            continue
        zone = rng.choice(("Europe/Dublin", "America/New_York", "Asia/Kolkata", "UTC"))
        for _ in range(20):
            moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(
                60 * 24 * 365))
            day, minute = opening_hours.local_minute(moment, zone)
            expected = any(i.day == day and i.opens <= minute < i.closes for i in found)
            assert opening_hours.is_open(hours, zone, moment) is expected, (ranges, moment)
            checked += 1
    assert checked > 1000
