"""The service's clock, for tests (``openbatch serve --test-clock``; not part of Azure's API).

``GET /openbatch/clock`` says what the service's clock reads; ``POST /openbatch/clock`` with
``{"advanceSeconds": N}`` moves it N seconds forward, and whatever was due meanwhile (schedule
runs, autoscale evaluations, lease expiries) happens at once. Signed like every other request.
"""

from __future__ import annotations

from typing import Any

from openbatch.batch.api.routing import BatchRequest, BatchResponse, Route, dumps
from openbatch.batch.domain import errors as e
from openbatch.common import clock


def _state() -> BatchResponse:
    return BatchResponse(200, dumps({"now": clock.iso8601(clock.now()), "offsetSeconds": clock.SERVICE.offset}))


async def get_clock(req: BatchRequest) -> BatchResponse:
    return _state()


async def advance_clock(req: BatchRequest) -> BatchResponse:
    body = await req.json()
    seconds: Any = body.get("advanceSeconds")
    try:
        clock.SERVICE.advance(float(seconds))
    except (TypeError, ValueError):
        raise e.InvalidPropertyValue("advanceSeconds must be a number of seconds, zero or more.",
                                     {"PropertyName": "advanceSeconds", "PropertyValue": str(seconds)[:64]}) from None
    return _state()


ROUTES: list[Route] = [
    Route("GET", "/openbatch/clock", get_clock),
    Route("POST", "/openbatch/clock", advance_clock),
]
