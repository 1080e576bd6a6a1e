"""The signed-date check both SharedKey verifiers share (Blob: x-ms-date/Date, Batch: ocp-date/Date)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from openbatch.common.clock import rfc1123
from openbatch.common.sharedkey import (
    BATCH_DATE_HEADERS,
    BLOB_DATE_HEADERS,
    MAX_CLOCK_SKEW,
    RequestDateError,
    check_request_date,
)

NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def _detail(headers: dict[str, str], names: tuple[str, ...] = BLOB_DATE_HEADERS) -> str:
    with pytest.raises(RequestDateError) as exc:
        check_request_date(headers, names, NOW)
    return exc.value.detail


def test_the_allowed_skew_is_fifteen_minutes_either_way() -> None:
    assert timedelta(minutes=15) == MAX_CLOCK_SKEW
    for delta in (timedelta(0), MAX_CLOCK_SKEW, -MAX_CLOCK_SKEW):
        assert check_request_date({"x-ms-date": rfc1123(NOW + delta)}, BLOB_DATE_HEADERS, NOW) == NOW + delta
    late = NOW - MAX_CLOCK_SKEW - timedelta(seconds=1)
    early = NOW + MAX_CLOCK_SKEW + timedelta(seconds=1)
    assert _detail({"x-ms-date": rfc1123(late)}) == "Request date header too old: 'Tue, 04 Mar 2025 04:51:06 GMT'"
    assert _detail({"x-ms-date": rfc1123(early)}) == (
        "Request date header too far in the future: 'Tue, 04 Mar 2025 05:21:08 GMT'")


def test_the_service_header_wins_over_date() -> None:
    fresh, stale = rfc1123(NOW), rfc1123(NOW - timedelta(days=1))
    assert check_request_date({"x-ms-date": fresh, "date": stale}, BLOB_DATE_HEADERS, NOW) == NOW
    assert check_request_date({"ocp-date": fresh, "date": stale}, BATCH_DATE_HEADERS, NOW) == NOW
    assert check_request_date({"date": fresh}, BATCH_DATE_HEADERS, NOW) == NOW
    assert _detail({"x-ms-date": stale, "date": fresh}).startswith("Request date header too old")
    assert _detail({"ocp-date": stale, "date": fresh}, BATCH_DATE_HEADERS).startswith("Request date header too old")
    # Batch does not read x-ms-date, Blob does not read ocp-date.
    assert _detail({"x-ms-date": fresh}, BATCH_DATE_HEADERS) == "Request date header not specified"
    assert _detail({"ocp-date": fresh}) == "Request date header not specified"


@pytest.mark.parametrize("value", ["", "  "])
def test_a_missing_date_is_refused(value: str) -> None:
    assert _detail({}) == "Request date header not specified"
    assert _detail({"x-ms-date": value, "date": rfc1123(NOW)}) == "Request date header not specified"


@pytest.mark.parametrize("value", ["yesterday", "Mon, 99 Jan 2025 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 -0100",
                                   "Mon, 02 Jan 99999999999 15:04:05 GMT"])
def test_a_malformed_date_is_refused(value: str) -> None:
    assert _detail({"x-ms-date": value}) == "The Date header in the request is incorrect."
