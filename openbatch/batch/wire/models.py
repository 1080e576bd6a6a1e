"""Request-body checks shared by every Batch operation: types, ranges, required properties.

The domain validates request bodies (already in the modern shape, see ``versions.to_internal``)
with these helpers; each raises the error Azure Batch answers for the mistake:

- a required property absent or null -> ``MissingRequiredProperty`` (PropertyName);
- a value of the wrong JSON type -> ``InvalidRequestBody`` (the service cannot even read it;
  Reason says which property and which type it expected);
- a value of the right type the service does not accept (out of range, unknown enum value,
  malformed duration) -> ``InvalidPropertyValue`` (PropertyName, PropertyValue, Reason).

``prop`` names the property in error details; it defaults to the key (callers pass a dotted
path such as ``startTask.commandLine`` for nested objects). Nothing here knows pools, jobs or
tasks: the rules of an entity live in its domain module.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from openbatch.batch.domain import errors as e

Body = Mapping[str, Any]

INVALID_VALUE = "The value provided for one of the properties in the request body is invalid."
MISSING_VALUE = "A required property was not specified in the request body."
NOT_SYNTACTIC = "The specified Request Body is not syntactically valid."

# .NET TimeSpan.MaxValue, what Azure reports for "no limit" durations (maxWallClockTime, ...).
UNBOUNDED_DURATION = "P10675199DT2H48M5.4775807S"
_MAX_TIMEDELTA = timedelta.max
# TimeSpan.MaxValue to timedelta's microsecond precision: anything this long means "unbounded".
_TIMESPAN_MAX = timedelta(days=10675199, hours=2, minutes=48, seconds=5, microseconds=477580)


# --- errors ----------------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value) if not isinstance(value, bool) else str(value).lower()
    return text[:256]


def missing(prop: str) -> e.BatchError:
    return e.MissingRequiredProperty(MISSING_VALUE, {"PropertyName": prop})


def invalid(prop: str, value: Any, reason: str | None = None) -> e.BatchError:
    values = {"PropertyName": prop, "PropertyValue": _show(value)}
    if reason:
        values["Reason"] = reason
    return e.InvalidPropertyValue(INVALID_VALUE, values)


def wrong_type(prop: str, expected: str) -> e.BatchError:
    return e.InvalidRequestBody(
        NOT_SYNTACTIC,
        {"PropertyName": prop, "Reason": f"Cannot convert the value of property '{prop}' to the expected type "
                                         f"'{expected}'."},
    )


# --- scalar accessors --------------------------------------------------------------------------


def _get(body: Body, key: str, required: bool, prop: str) -> Any:
    value = body.get(key)
    if value is None and required:
        raise missing(prop)
    return value


def string(body: Body, key: str, *, required: bool = False, prop: str | None = None,
           max_len: int | None = None, allow_empty: bool = False) -> str | None:
    """A string property; empty strings count as absent unless ``allow_empty``."""
    name = prop or key
    value = _get(body, key, required, name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise wrong_type(name, "Edm.String")
    if value == "" and not allow_empty:
        if required:
            raise missing(name)
        return None
    if max_len is not None and len(value) > max_len:
        raise invalid(name, value, f"The value must be at most {max_len} characters long.")
    return value


def integer(body: Body, key: str, *, required: bool = False, prop: str | None = None,
            lo: int | None = None, hi: int | None = None) -> int | None:
    """An integer property within ``lo``..``hi`` (inclusive) when given."""
    name = prop or key
    value = _get(body, key, required, name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(name, "Edm.Int32")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        low = "" if lo is None else f" at least {lo}"
        high = "" if hi is None else f" at most {hi}"
        joiner = " and" if low and high else ""
        raise invalid(name, value, f"The value must be{low}{joiner}{high}.")
    return value


def boolean(body: Body, key: str, *, required: bool = False, prop: str | None = None) -> bool | None:
    name = prop or key
    value = _get(body, key, required, name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise wrong_type(name, "Edm.Boolean")
    return value


def enum(body: Body, key: str, allowed: Collection[str], *, required: bool = False,
         prop: str | None = None) -> str | None:
    """A string out of ``allowed``, matched case-insensitively; returns the canonical spelling."""
    name = prop or key
    value = string(body, key, required=required, prop=name)
    if value is None:
        return None
    for candidate in allowed:
        if candidate.lower() == value.lower():
            return candidate
    raise invalid(name, value, f"The value must be one of: {', '.join(allowed)}.")


def obj(body: Body, key: str, *, required: bool = False, prop: str | None = None) -> dict[str, Any] | None:
    """A nested JSON object."""
    name = prop or key
    value = _get(body, key, required, name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise wrong_type(name, "Object")
    return value


def array(body: Body, key: str, *, required: bool = False, prop: str | None = None,
          max_items: int | None = None) -> list[Any] | None:
    """A JSON array (of anything; use ``objects`` / ``strings`` for typed items)."""
    name = prop or key
    value = _get(body, key, required, name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise wrong_type(name, "Collection")
    if max_items is not None and len(value) > max_items:
        raise invalid(name, f"{len(value)} items", f"At most {max_items} items are allowed.")
    return value


def objects(body: Body, key: str, *, required: bool = False, prop: str | None = None,
            max_items: int | None = None) -> list[dict[str, Any]] | None:
    """A JSON array of objects."""
    name = prop or key
    items = array(body, key, required=required, prop=name, max_items=max_items)
    if items is None:
        return None
    for item in items:
        if not isinstance(item, dict):
            raise wrong_type(name, "Collection(Object)")
    return items


def strings(body: Body, key: str, *, required: bool = False, prop: str | None = None,
            max_items: int | None = None) -> list[str] | None:
    """A JSON array of strings."""
    name = prop or key
    items = array(body, key, required=required, prop=name, max_items=max_items)
    if items is None:
        return None
    for item in items:
        if not isinstance(item, str):
            raise wrong_type(name, "Collection(Edm.String)")
    return items


# --- durations and times -----------------------------------------------------------------------

_DURATION = re.compile(
    r"^(?P<sign>-)?P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> timedelta | None:
    """An ISO 8601 duration (``PT15M``, ``P1DT2H``, ``PT0.5S``) as Azure accepts it; None if malformed.

    Years and months are refused (their length is ambiguous, and Azure refuses them too).
    .NET's TimeSpan.MaxValue (``P10675199DT2H48M5.4775807S``, Azure's "unbounded") and anything
    longer saturate at ``timedelta.max``, which ``format_duration`` renders back as TimeSpan.MaxValue.
    """
    m = _DURATION.match(text.strip())
    if m is None or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        return None
    parts = {k: float(v) for k, v in m.groupdict().items() if v is not None and k != "sign"}
    try:
        value = timedelta(days=parts.get("days", 0.0), hours=parts.get("hours", 0.0),
                          minutes=parts.get("minutes", 0.0), seconds=parts.get("seconds", 0.0))
    except OverflowError:
        value = _MAX_TIMEDELTA
    if value >= _TIMESPAN_MAX:
        value = _MAX_TIMEDELTA
    return -value if m.group("sign") else value


def format_duration(value: timedelta) -> str:
    """A timedelta as Azure renders durations: ``PT15M``, ``P1DT2H3M4.5S``, ``PT0S``."""
    if value >= _TIMESPAN_MAX:
        return UNBOUNDED_DURATION
    total_us = value.days * 86_400_000_000 + value.seconds * 1_000_000 + value.microseconds
    sign = "-" if total_us < 0 else ""
    total_us = abs(total_us)
    days, rest = divmod(total_us, 86_400_000_000)
    hours, rest = divmod(rest, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, micros = divmod(rest, 1_000_000)
    time = ""
    if hours:
        time += f"{hours}H"
    if minutes:
        time += f"{minutes}M"
    if seconds or micros:
        time += f"{seconds}.{micros:06d}".rstrip("0").rstrip(".") + "S"
    out = f"{sign}P{days}D" if days else f"{sign}P"
    if time:
        out += "T" + time
    return out if out not in ("P", "-P") else "PT0S"


def duration(body: Body, key: str, *, required: bool = False, prop: str | None = None,
             lo: timedelta | None = None, hi: timedelta | None = None) -> timedelta | None:
    """An ISO 8601 duration property within ``lo``..``hi`` when given."""
    name = prop or key
    text = string(body, key, required=required, prop=name)
    if text is None:
        return None
    value = parse_duration(text)
    if value is None:
        raise invalid(name, text, "The value is not a valid ISO 8601 duration.")
    if lo is not None and value < lo:
        raise invalid(name, text, f"The value must be at least {format_duration(lo)}.")
    if hi is not None and value > hi:
        raise invalid(name, text, f"The value must be at most {format_duration(hi)}.")
    return value


def parse_datetime(text: str) -> datetime | None:
    """An ISO 8601 date-time (any precision, ``Z`` or an offset); None if malformed or naive."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    match = re.match(r"^(.*T\d{2}:\d{2}:\d{2})\.(\d+)(.*)$", value)
    if match:  # Python accepts at most 6 fractional digits; .NET sends 7
        value = f"{match[1]}.{match[2][:6].ljust(6, '0')}{match[3]}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def date_time(body: Body, key: str, *, required: bool = False, prop: str | None = None) -> datetime | None:
    name = prop or key
    text = string(body, key, required=required, prop=name)
    if text is None:
        return None
    value = parse_datetime(text)
    if value is None:
        raise invalid(name, text, "The value is not a valid ISO 8601 date-time with a time zone.")
    return value


# --- small shared shapes -----------------------------------------------------------------------


def name_value_pairs(body: Body, key: str, *, prop: str | None = None, value_required: bool = True,
                     unique: bool = True, max_items: int | None = None) -> list[dict[str, Any]] | None:
    """``[{"name": ..., "value": ...}]`` lists (metadata, environment settings): names required and
    (when ``unique``) distinct; returns clean copies with only ``name`` and ``value``."""
    name = prop or key
    items = objects(body, key, prop=name, max_items=max_items)
    if items is None:
        return None
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in items:
        item_name = string(item, "name", required=True, prop=f"{name}.name")
        assert item_name is not None
        value = string(item, "value", required=value_required, prop=f"{name}.value", allow_empty=True)
        if unique and item_name in seen:
            raise invalid(f"{name}.name", item_name, "The name is specified more than once.")
        seen.add(item_name)
        out.append({"name": item_name, "value": value if value is not None else ""}
                   if value_required or value is not None else {"name": item_name})
    return out


def only(body: Body, keys: Collection[str]) -> dict[str, Any]:
    """The entries of ``body`` among ``keys`` that are not null (unknown properties are ignored)."""
    return {k: body[k] for k in keys if body.get(k) is not None}


_RESOURCE_SOURCES = ("httpUrl", "storageContainerUrl", "autoStorageContainerName")


def resource_files(body: Body, key: str = "resourceFiles", *, prop: str | None = None) -> list[dict[str, Any]] | None:
    """Resource files (modern shape): exactly one source each; ``filePath`` required for ``httpUrl``;
    ``blobPrefix`` only with a container source; ``fileMode`` an octal string."""
    name = prop or key
    items = objects(body, key, prop=name)
    if items is None:
        return None
    for item in items:
        sources = [s for s in _RESOURCE_SOURCES if item.get(s) not in (None, "")]
        for source in sources:
            string(item, source, prop=f"{name}.{source}")
        if not sources:
            raise missing(f"{name}.httpUrl")
        if len(sources) > 1:
            raise invalid(f"{name}.{sources[1]}", item[sources[1]],
                          f"Only one of {', '.join(_RESOURCE_SOURCES)} may be specified.")
        file_path = string(item, "filePath", required=sources[0] == "httpUrl", prop=f"{name}.filePath")
        if file_path is not None and (file_path.startswith("/") or ".." in file_path.replace("\\", "/").split("/")):
            raise invalid(f"{name}.filePath", file_path,
                          "The path must be relative to the task's working directory and must not leave it.")
        prefix = string(item, "blobPrefix", prop=f"{name}.blobPrefix")
        if prefix is not None and sources[0] == "httpUrl":
            raise invalid(f"{name}.blobPrefix", prefix, "blobPrefix is only valid with a container source.")
        mode = string(item, "fileMode", prop=f"{name}.fileMode")
        if mode is not None and not re.fullmatch(r"0?[0-7]{3,4}", mode):
            raise invalid(f"{name}.fileMode", mode, "The file mode must be an octal string such as '0770'.")
    return items


def user_identity(body: Body, key: str = "userIdentity", *, prop: str | None = None) -> dict[str, Any] | None:
    """``{"userName": ...}`` or ``{"autoUser": {"scope": task|pool, "elevationLevel": nonadmin|admin}}``."""
    name = prop or key
    identity = obj(body, key, prop=name)
    if identity is None:
        return None
    user = string(identity, "userName", prop=f"{name}.userName")
    auto = obj(identity, "autoUser", prop=f"{name}.autoUser")
    if user is not None and auto is not None:
        raise invalid(f"{name}.userName", user, "userName and autoUser are mutually exclusive.")
    if auto is not None:
        scope = enum(auto, "scope", ("task", "pool"), prop=f"{name}.autoUser.scope")
        level = enum(auto, "elevationLevel", ("nonadmin", "admin"), prop=f"{name}.autoUser.elevationLevel")
        identity = {**identity, "autoUser": {**auto, **({"scope": scope} if scope else {}),
                                             **({"elevationLevel": level} if level else {})}}
    return identity
