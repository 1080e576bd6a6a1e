"""Request-body checks: each mistake maps to the error Azure Batch answers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from openbatch.batch.domain import errors as e
from openbatch.batch.wire import models as m


def test_string_required_missing_and_wrong_type() -> None:
    with pytest.raises(e.MissingRequiredProperty) as exc:
        m.string({}, "vmSize", required=True)
    assert exc.value.values == {"PropertyName": "vmSize"}
    with pytest.raises(e.MissingRequiredProperty):
        m.string({"vmSize": ""}, "vmSize", required=True)
    with pytest.raises(e.InvalidRequestBody) as bad:
        m.string({"vmSize": 3}, "vmSize")
    assert bad.value.values["PropertyName"] == "vmSize"
    assert m.string({"a": "x"}, "a") == "x"
    assert m.string({}, "a") is None


def test_integer_range_and_types() -> None:
    assert m.integer({"n": 4}, "n", lo=1, hi=256) == 4
    assert m.integer({"n": 4.0}, "n") == 4
    with pytest.raises(e.InvalidPropertyValue) as exc:
        m.integer({"n": 0}, "n", lo=1, hi=256)
    assert exc.value.values["PropertyName"] == "n"
    assert exc.value.values["PropertyValue"] == "0"
    with pytest.raises(e.InvalidRequestBody):
        m.integer({"n": "4"}, "n")
    with pytest.raises(e.InvalidRequestBody):
        m.integer({"n": True}, "n")
    with pytest.raises(e.InvalidRequestBody):
        m.integer({"n": 1.5}, "n")


def test_boolean_enum_obj_array() -> None:
    assert m.boolean({"b": False}, "b") is False
    with pytest.raises(e.InvalidRequestBody):
        m.boolean({"b": "true"}, "b")
    assert m.enum({"f": "PACK"}, "f", ("spread", "pack")) == "pack"
    with pytest.raises(e.InvalidPropertyValue):
        m.enum({"f": "dense"}, "f", ("spread", "pack"))
    with pytest.raises(e.InvalidRequestBody):
        m.obj({"o": []}, "o")
    with pytest.raises(e.InvalidPropertyValue):
        m.strings({"l": ["a"] * 101}, "l", max_items=100)
    with pytest.raises(e.InvalidRequestBody):
        m.strings({"l": ["a", 1]}, "l")
    with pytest.raises(e.InvalidRequestBody):
        m.objects({"l": ["a"]}, "l")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT15M", timedelta(minutes=15)),
        ("P1DT2H3M4.5S", timedelta(days=1, hours=2, minutes=3, seconds=4.5)),
        ("PT0S", timedelta(0)),
        ("PT300S", timedelta(minutes=5)),
        ("P10675199DT2H48M5.4775807S", timedelta.max),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert m.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "15M", "P1Y", "PT1H2", "abc", "P1DT"])
def test_bad_durations(text: str) -> None:
    assert m.parse_duration(text) is None


def test_duration_format_round_trip() -> None:
    for text in ("PT15M", "P1DT2H3M4.5S", "PT0S", "PT5M", "P2D", m.UNBOUNDED_DURATION):
        value = m.parse_duration(text)
        assert value is not None
        assert m.format_duration(value) == text
    assert m.format_duration(timedelta(seconds=300)) == "PT5M"


def test_duration_property_bounds() -> None:
    assert m.duration({"t": "PT10M"}, "t", lo=timedelta(minutes=5)) == timedelta(minutes=10)
    with pytest.raises(e.InvalidPropertyValue):
        m.duration({"t": "PT1M"}, "t", lo=timedelta(minutes=5))
    with pytest.raises(e.InvalidPropertyValue):
        m.duration({"t": "ten minutes"}, "t")


def test_datetimes() -> None:
    assert m.parse_datetime("2024-01-02T03:04:05.1234567Z") is not None
    assert m.parse_datetime("2024-01-02T03:04:05+01:00") is not None
    assert m.parse_datetime("2024-01-02T03:04:05") is None
    assert m.parse_datetime("yesterday") is None
    with pytest.raises(e.InvalidPropertyValue):
        m.date_time({"d": "yesterday"}, "d")


def test_name_value_pairs() -> None:
    pairs = m.name_value_pairs({"metadata": [{"name": "a", "value": "1", "extra": 2}]}, "metadata")
    assert pairs == [{"name": "a", "value": "1"}]
    with pytest.raises(e.MissingRequiredProperty) as exc:
        m.name_value_pairs({"metadata": [{"value": "1"}]}, "metadata")
    assert exc.value.values["PropertyName"] == "metadata.name"
    with pytest.raises(e.MissingRequiredProperty):
        m.name_value_pairs({"metadata": [{"name": "a"}]}, "metadata")
    with pytest.raises(e.InvalidPropertyValue):
        m.name_value_pairs({"metadata": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]}, "metadata")
    env = m.name_value_pairs({"env": [{"name": "A"}]}, "env", value_required=False)
    assert env == [{"name": "A"}]


def test_resource_files() -> None:
    ok = {"resourceFiles": [{"httpUrl": "http://x/y", "filePath": "y"},
                            {"storageContainerUrl": "http://x/c", "blobPrefix": "in/"},
                            {"autoStorageContainerName": "c", "fileMode": "0755"}]}
    assert m.resource_files(ok) is not None
    with pytest.raises(e.MissingRequiredProperty):
        m.resource_files({"resourceFiles": [{"httpUrl": "http://x/y"}]})
    with pytest.raises(e.MissingRequiredProperty):
        m.resource_files({"resourceFiles": [{"filePath": "y"}]})
    with pytest.raises(e.InvalidPropertyValue):
        m.resource_files({"resourceFiles": [{"httpUrl": "http://x", "storageContainerUrl": "http://c", "filePath": "y"}]})
    with pytest.raises(e.InvalidPropertyValue):
        m.resource_files({"resourceFiles": [{"httpUrl": "http://x", "filePath": "../../etc/passwd"}]})
    with pytest.raises(e.InvalidPropertyValue):
        m.resource_files({"resourceFiles": [{"autoStorageContainerName": "c", "fileMode": "rwx"}]})


def test_user_identity() -> None:
    got = m.user_identity({"userIdentity": {"autoUser": {"scope": "Pool", "elevationLevel": "Admin"}}})
    assert got == {"autoUser": {"scope": "pool", "elevationLevel": "admin"}}
    with pytest.raises(e.InvalidPropertyValue):
        m.user_identity({"userIdentity": {"userName": "u", "autoUser": {}}})
    with pytest.raises(e.InvalidPropertyValue):
        m.user_identity({"userIdentity": {"autoUser": {"elevationLevel": "root"}}})
