"""Cross-origin resource sharing, as Azure Storage evaluates it ("CORS support for Azure Storage").

The rules are the ``<Cors>`` of the Blob service properties: at most 5, each with allowed origins
(``*`` or a list), methods, request headers (exact or ``prefix*``), exposed response headers and a
max age. A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is
answered without authorization by the first rule that allows the origin, the method and every
requested header, else 403 CorsPreflightFailure. Any other request with an ``Origin`` gets the
CORS response headers of the first rule allowing its origin and method; without a matching rule
(or an ``Origin``) a GET or HEAD of an account with rules says ``Vary: Origin``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from xml.etree.ElementTree import Element

from defusedxml.ElementTree import fromstring

from openbatch.blob.errors import BlobError

MAX_RULES = 5
MAX_ITEMS = 64  # origins, headers, exposed headers per rule
METHODS = frozenset({"DELETE", "GET", "HEAD", "MERGE", "POST", "OPTIONS", "PUT", "PATCH"})


@dataclass(frozen=True)
class CorsRule:
    origins: tuple[str, ...]  # ("*",) or origins, compared as given
    methods: frozenset[str]
    headers: tuple[str, ...]  # lower-case; "x-ms-meta-*" allows every header with that prefix
    exposed: tuple[str, ...]  # as configured (prefix rules end with "*")
    max_age: int

    @property
    def any_origin(self) -> bool:
        return "*" in self.origins

    def allows(self, origin: str, method: str) -> bool:
        return (self.any_origin or origin in self.origins) and method in self.methods

    def allows_headers(self, requested: list[str]) -> bool:
        return all(any(_matches(h, allowed) for allowed in self.headers) for h in requested)


def _matches(name: str, rule: str) -> bool:
    return rule == "*" or name == rule or (rule.endswith("*") and name.startswith(rule[:-1]))


def _items(element: Element, tag: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in (element.findtext(tag) or "").split(",") if item.strip())


def _bad(tag: str, value: str) -> BlobError:
    return BlobError("InvalidXmlNodeValue", "The value for one of the XML nodes is not in the correct format.",
                     XmlNodeName=tag, XmlNodeValue=value[:256])


def _rule(element: Element) -> CorsRule:
    origins, methods = _items(element, "AllowedOrigins"), _items(element, "AllowedMethods")
    headers, exposed = _items(element, "AllowedHeaders"), _items(element, "ExposedHeaders")
    age = (element.findtext("MaxAgeInSeconds") or "").strip()
    if not origins or len(origins) > MAX_ITEMS:
        raise _bad("AllowedOrigins", ",".join(origins))
    if not methods or not set(methods) <= METHODS:
        raise _bad("AllowedMethods", ",".join(methods))
    for tag, items in (("AllowedHeaders", headers), ("ExposedHeaders", exposed)):
        if len(items) > MAX_ITEMS:
            raise _bad(tag, ",".join(items))
    if not age.isdigit():
        raise _bad("MaxAgeInSeconds", age)
    return CorsRule(origins, frozenset(methods), tuple(h.lower() for h in headers), exposed, int(age))


def check_rules(root: Element) -> None:
    """The ``<Cors>`` of a Set Blob Service Properties body: at most 5 well-formed rules."""
    cors = root.find("Cors")
    found = list(cors.iter("CorsRule")) if cors is not None else []
    if len(found) > MAX_RULES:
        raise _bad("Cors", f"{len(found)} rules")
    for element in found:
        _rule(element)


@lru_cache(maxsize=64)
def rules(service_properties: str | None) -> tuple[CorsRule, ...]:
    """The CORS rules of stored service properties (checked when they were set)."""
    if not service_properties or "<CorsRule" not in service_properties:
        return ()
    cors = fromstring(service_properties.encode("utf-8")).find("Cors")
    return tuple(_rule(e) for e in cors.iter("CorsRule")) if cors is not None else ()


def preflight(found: tuple[CorsRule, ...], origin: str | None, method: str | None,
              request_headers: str | None) -> list[tuple[str, str]]:
    """The answer to a preflight OPTIONS: its headers (400 without Origin or method; 403
    CorsPreflightFailure when no rule allows it)."""
    for header, value in (("Origin", origin), ("Access-Control-Request-Method", method)):
        if not value:
            raise BlobError("InvalidHeaderValue", "A required CORS header is not present.", HeaderName=header)
    assert origin is not None and method is not None
    requested = [h.strip().lower() for h in (request_headers or "").split(",") if h.strip()]
    for rule in found:
        if rule.allows(origin, method) and rule.allows_headers(requested):
            headers = [("access-control-allow-origin", origin), ("access-control-allow-methods", method),
                       ("access-control-max-age", str(rule.max_age)), ("access-control-allow-credentials", "true")]
            if request_headers:
                headers.append(("access-control-allow-headers", request_headers))
            return headers
    raise BlobError("CorsPreflightFailure", "CORS not enabled or no matching rule found for this request.",
                    status=403)


def response_headers(found: tuple[CorsRule, ...], origin: str | None, method: str,
                     names: list[str]) -> list[tuple[str, str]]:
    """The CORS headers of an ordinary response whose own header names are ``names``."""
    if not found:
        return []
    rule = next((r for r in found if origin and r.allows(origin, method)), None)
    if rule is None:
        return [("vary", "Origin")] if method in ("GET", "HEAD") else []
    headers = [("access-control-allow-origin", "*" if rule.any_origin else str(origin))]
    if not rule.any_origin:
        headers += [("vary", "Origin"), ("access-control-allow-credentials", "true")]
    exposed = _exposed(rule.exposed, names)
    if exposed:
        headers.append(("access-control-expose-headers", ",".join(exposed)))
    return headers


def _exposed(rules_: tuple[str, ...], names: list[str]) -> list[str]:
    """The response headers a rule's ExposedHeaders name: every literal one, and those present
    that a prefix rule covers."""
    prefixes = [r[:-1].lower() for r in rules_ if r.endswith("*")]
    literal = [r for r in rules_ if not r.endswith("*")]
    shown = [n for n in names if any(n.lower().startswith(p) for p in prefixes) and n not in literal]
    return literal + shown
