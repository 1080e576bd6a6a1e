"""Job schedule validation (domain/schedules.py), without a server: the schedule's times and
intervals as Azure takes them."""

from __future__ import annotations

import pytest

from openbatch.batch.domain import errors as e
from openbatch.batch.domain.schedules import check_schedule


def test_times_are_kept_in_utc_and_durations_as_azure_writes_them() -> None:
    assert check_schedule({"doNotRunUntil": "2030-01-01T12:00:00+02:00", "doNotRunAfter": "2030-01-02T00:00:00Z",
                           "startWindow": "PT60S", "recurrenceInterval": "P1DT0H"}) == {
        "doNotRunUntil": "2030-01-01T10:00:00.000000Z", "doNotRunAfter": "2030-01-02T00:00:00.000000Z",
        "startWindow": "PT1M", "recurrenceInterval": "P1D"}
    assert check_schedule(None) == {} and check_schedule({}) == {}


@pytest.mark.parametrize("body,prop", [
    ({"recurrenceInterval": "PT59S"}, "schedule.recurrenceInterval"),
    ({"startWindow": "PT30S"}, "schedule.startWindow"),
    ({"startWindow": "soon"}, "schedule.startWindow"),
    ({"doNotRunUntil": "tomorrow"}, "schedule.doNotRunUntil"),
    ({"doNotRunAfter": "2030-01-01T00:00:00"}, "schedule.doNotRunAfter"),  # no time zone
])
def test_what_azure_refuses(body: dict[str, str], prop: str) -> None:
    with pytest.raises(e.BatchError) as exc:
        check_schedule(body)
    assert exc.value.code == "InvalidPropertyValue" and exc.value.values["PropertyName"] == prop
