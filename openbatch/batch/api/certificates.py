"""Certificate routes: parse, call one operation of ``domain/certificates.py``, render. Nothing else.

Certificates are addressed as Azure addresses them:
``/certificates(thumbprintAlgorithm={algorithm},thumbprint={thumbprint})``.
"""

from __future__ import annotations

from openbatch.batch.api.pools import body_of, page_args, page_response, query_filter
from openbatch.batch.api.routing import BatchRequest, BatchResponse, Route, created, entity, no_content
from openbatch.batch.domain import certificates

FILTER_PROPERTIES = {"thumbprint": "String", "thumbprintAlgorithm": "String", "url": "String", "state": "String",
                     "stateTransitionTime": "DateTime", "previousState": "String",
                     "previousStateTransitionTime": "DateTime", "publicData": "String"}
_ONE = "/certificates(thumbprintAlgorithm={thumbprintAlgorithm},thumbprint={thumbprint})"


def _ids(req: BatchRequest) -> tuple[str, str]:
    return req.params["thumbprintAlgorithm"], req.params["thumbprint"]


async def add_certificate(req: BatchRequest) -> BatchResponse:
    body = await body_of(req, "certificate")
    doc = await certificates.add_certificate(req.ctx, req.account, body, req.base_url)
    return created(req, doc, str(doc["url"]))


async def list_certificates(req: BatchRequest) -> BatchResponse:
    accept = query_filter(req, FILTER_PROPERTIES, "certificate")
    after, limit = page_args(req)
    docs, next_key = certificates.list_certificates(req.ctx, req.account, accept, after, limit)
    return page_response(req, "certificate", "certificates", docs, next_key)


async def get_certificate(req: BatchRequest) -> BatchResponse:
    return entity(req, "certificate", "certificates", certificates.get_certificate(req.ctx, req.account, *_ids(req)))


async def delete_certificate(req: BatchRequest) -> BatchResponse:
    await certificates.delete_certificate(req.ctx, req.account, *_ids(req))
    return no_content(202)


async def cancel_deletion(req: BatchRequest) -> BatchResponse:
    doc = await certificates.cancel_deletion(req.ctx, req.account, *_ids(req))
    return no_content(204, location=str(doc["url"]))


ROUTES: list[Route] = [
    Route("POST", "/certificates", add_certificate),
    Route("GET", "/certificates", list_certificates),
    Route("GET", _ONE, get_certificate),
    Route("DELETE", _ONE, delete_certificate),
    Route("POST", f"{_ONE}/canceldelete", cancel_deletion),
]
