"""Numbers sent as JSON strings, read as Azure's OData reader reads them.

Azure Batch parses request bodies with an OData reader that takes ``"targetDedicatedNodes": "1"``
as well as ``1`` for an ``Edm.Int32`` property (the Azure CLI sends every integer flag that way).
This module does the same, once, at the wire edge: driven by where the spec says the numbers of
each operation's body are (``spec_numbers``, generated from the spec), a string holding a number
becomes that number; a string that is not one is refused with the error a value of the wrong type
gets everywhere else (400 ``InvalidRequestBody``, naming the property and the type). Everything
else is left for the domain to validate.
"""

from __future__ import annotations

import math
import re
from typing import Any

from openbatch.batch.wire import models as m
from openbatch.batch.wire.spec_numbers import BODIES, SHAPES

# XmlConvert.ToInt32/ToInt64/ToDouble, which the reader uses on strings: surrounding white space
# and a sign are allowed, nothing else.
_INTEGER = re.compile(r"[ \t\r\n]*[+-]?[0-9]+[ \t\r\n]*")
_DOUBLE = re.compile(r"[ \t\r\n]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t\r\n]*")
_LIMITS = {"int32": 1 << 31, "int64": 1 << 63}
_EDM = {"int32": "Edm.Int32", "int64": "Edm.Int64", "double": "Edm.Double"}


def read_numbers(body: Any, operation: str) -> Any:
    """``body`` (a parsed request body of ``operation``, e.g. ``"POST /pools/{}"``) with the numbers
    the spec expects read from strings, in place; InvalidRequestBody for a string that is no number."""
    definition = BODIES.get(operation)
    if definition is not None and isinstance(body, dict):
        _object(body, definition, "")
    return body


def _object(doc: dict[str, Any], definition: str, prefix: str) -> None:
    for key, shape in SHAPES[definition].items():
        if key in doc and doc[key] is not None:
            doc[key] = _value(doc[key], shape, f"{prefix}{key}")


def _value(value: Any, shape: str, prop: str) -> Any:
    if shape.startswith("["):
        if isinstance(value, list):
            return [_value(item, shape[1:-1], prop) for item in value]
        return value
    if shape.startswith("@"):
        if isinstance(value, dict):
            _object(value, shape[1:], f"{prop}.")
        return value
    return _number(value, shape, prop) if isinstance(value, str) else value


def _number(text: str, kind: str, prop: str) -> int | float:
    if kind == "double":
        if _DOUBLE.fullmatch(text):
            number = float(text)
            if math.isfinite(number):
                return number
    elif _INTEGER.fullmatch(text):
        integer = int(text)
        if -_LIMITS[kind] <= integer < _LIMITS[kind]:
            return integer
    raise m.wrong_type(prop, _EDM[kind])
