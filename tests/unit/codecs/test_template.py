"""The event time that index names and file paths use: any odd value falls back to now, never raises."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.codecs.template import EventTemplate, event_time

NOW_YEAR = datetime.now(UTC).year


@pytest.mark.parametrize(("value", "expected"), [
    ("2025-06-24T10:11:12.5Z", datetime(2025, 6, 24, 10, tzinfo=UTC)),
    (1750759872, datetime(2025, 6, 24, 10, 11, 12, tzinfo=UTC)),  # seconds
    (1750759872123, datetime(2025, 6, 24, 10, 11, 12, 123000, tzinfo=UTC)),  # milliseconds
    (1750759872123456, datetime(2025, 6, 24, 10, 11, 12, 123456, tzinfo=UTC)),  # microseconds
    (1750759872123456789, datetime(2025, 6, 24, 10, 11, 12, 123457, tzinfo=UTC)),  # nanoseconds
])
def test_event_times_of_every_epoch_unit(value: object, expected: datetime) -> None:
    assert event_time({"time": value}) == expected


@pytest.mark.parametrize("value", [10**30, -(10**30), 1e25, float("inf"), float("-inf"), float("nan"), 2**70,
                                   "qwerty-and-more", True, None, {"a": 1}])
def test_a_time_that_cannot_be_a_date_falls_back_to_now(value: object) -> None:
    assert event_time({"timestamp": value}).year == NOW_YEAR


def test_a_template_renders_for_an_event_whose_time_is_out_of_range() -> None:
    """Review finding: a microsecond epoch used to raise 'year 55840 is out of range' and crash the file sink."""
    template = EventTemplate("logs-%Y-%m-%d-{{ app }}", str)
    key = template.partition_key()
    assert key({"timestamp": 1700000000000000, "app": "a"}) == "logs-2023-11-14-a"
    assert key({"timestamp": 10**30, "app": "a"}).startswith(f"logs-{NOW_YEAR}-")


@pytest.mark.parametrize("template", ["logs-%Y.%m.%d", "{{ app }}-%Y.%m.%d"])
def test_a_text_time_with_an_offset_names_its_utc_day(template: str) -> None:
    """Trial finding: 01:20 at +02:00 is 23:20 UTC the day before, where Logstash and Vector put it; the offset was
    ignored (the local hour read as UTC), and a cache by the first 13 characters mixed the two."""
    key = EventTemplate(template, str).partition_key()
    assert key({"@timestamp": "2024-05-01T01:20:30Z", "app": "logs"}) == "logs-2024.05.01"
    assert key({"@timestamp": "2024-05-01T01:20:30+02:00", "app": "logs"}) == "logs-2024.04.30"
    assert key({"@timestamp": "2024-04-30T22:50:00.123456789-05:30", "app": "logs"}) == "logs-2024.05.01"
    assert event_time({"time": "2024-05-01T01:20:30+02:00"}) == datetime(2024, 4, 30, 23, 20, 30, tzinfo=UTC)
    assert key({"@timestamp": "2024-05-02T01:20+02:00", "app": "logs"}) == "logs-2024.05.01"  # no seconds
    assert key({"@timestamp": "2024-05-02T23:20-02:00", "app": "logs"}) == "logs-2024.05.03"
    assert key({"@timestamp": "2024-05-02T23:20", "app": "logs"}) == "logs-2024.05.02"  # no offset: UTC


def test_a_template_with_minutes_or_seconds_renders_them_from_a_text_time() -> None:
    """Trial finding: text times were read to the hour only, so %M was always 00 (and a number's real minute)."""
    template = EventTemplate("/logs/%Y-%m-%dT%H-%M-%S.log", str)
    key = template.partition_key()
    assert key({"time": "2024-05-01T10:20:30Z"}) == "/logs/2024-05-01T10-20-30.log"
    assert key({"time": "2024-05-01T10:45:01.5Z"}) == "/logs/2024-05-01T10-45-01.log"
    assert template.render({"time": "2024-05-01T10:45:01+01:00"}) == "/logs/2024-05-01T09-45-01.log"
    assert key({"time": 1714560301}) == "/logs/2024-05-01T10-45-01.log"


def test_a_literal_percent_sign_before_m_is_no_minute() -> None:
    assert not EventTemplate("/logs/%Y-%m-%d-100%%M.log", str).exact  # '%%M' writes '%M': cached by the hour
    assert EventTemplate("/logs/%Y-%m-%d-%%%M.log", str).exact  # '%%' then a real minute
