"""The one parser of Bundle entry request URLs: ``Type``, ``Type/id`` or ``Type?query``.

Anything else is refused with an OperationOutcome naming the entry: ``_history``, trailing
slashes, extra path segments, a query after ``Type/id``, an absolute URL that is not this
server's, and a method that does not fit the form (``POST Type/id``, ``PUT Type``, ``GET
Type?query`` — searches inside Bundles are not supported).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from gateway.errors import BadRequest

Method = Literal["GET", "POST", "PUT", "DELETE"]
METHODS: tuple[Method, ...] = ("DELETE", "POST", "PUT", "GET")  # FHIR's processing order
ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{0,63}$")


@dataclass(slots=True)
class EntryRequest:
    """One entry's request, parsed: exactly one of ``rid`` / ``criteria`` / neither."""

    index: int
    method: Method
    rtype: str
    rid: str | None
    criteria: str | None
    full_url: str | None
    resource: dict[str, Any] | None
    if_match: str | None
    if_none_exist: str | None

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def parse_entry_url(url: str, fhir_base: str, where: str) -> tuple[str, str | None, str | None]:
    """``(type, id, criteria)`` of an entry URL; BadRequest for every other form."""
    expression = f"{where}.request.url"
    if fhir_base and url.startswith(fhir_base + "/"):
        url = url[len(fhir_base) + 1 :]
    elif "://" in url.partition("?")[0] or url.startswith("/"):
        raise BadRequest(
            "request.url must be relative (Type, Type/id or Type?query) or on this server",
            expression=expression,
        )
    path, question, query = url.partition("?")
    segments = path.split("/")
    if not _TYPE_RE.match(segments[0]):
        raise BadRequest("request.url must start with a resource type", expression=expression)
    if len(segments) == 1:
        if question and not query:
            raise BadRequest("request.url has an empty query", expression=expression)
        return segments[0], None, query or None
    if len(segments) > 2 or not segments[1]:
        raise BadRequest(
            "request.url must be Type, Type/id or Type?query "
            "(no _history, operations or trailing slash)",
            expression=expression,
        )
    if question:
        raise BadRequest(
            "request.url Type/id takes no query (use Type?query for a conditional request)",
            expression=expression,
        )
    if not ID_RE.match(segments[1]):
        raise BadRequest("not a valid resource id", expression=expression)
    return segments[0], segments[1], None


def parse_entry(index: int, entry: Any, fhir_base: str) -> EntryRequest:
    """Parse and check one Bundle entry's request (method, URL form, resource)."""
    where = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise BadRequest("each entry needs request.method and request.url", expression=where)
    request = entry["request"]
    method = str(request.get("method", "")).upper()
    if method not in METHODS:
        raise BadRequest(
            f"request.method {method or '(none)'} is not supported (GET, POST, PUT, DELETE)",
            expression=f"{where}.request.method",
        )
    rtype, rid, criteria = parse_entry_url(str(request.get("url", "")), fhir_base, where)
    url = f"{where}.request.url"
    if method == "POST" and (rid is not None or criteria is not None):
        raise BadRequest("POST takes request.url Type (no id, no query)", expression=url)
    if method == "PUT" and rid is None and criteria is None:
        raise BadRequest("PUT needs Type/id or Type?criteria", expression=url)
    if method == "DELETE" and rid is None and criteria is None:
        raise BadRequest("DELETE needs Type/id or Type?criteria", expression=url)
    if method == "GET" and rid is None:
        raise BadRequest("only reads (GET Type/id) are supported inside a Bundle", expression=url)
    resource = entry.get("resource")
    if method in ("POST", "PUT"):
        if not isinstance(resource, dict):
            raise BadRequest(f"{method} needs a resource", expression=f"{where}.resource")
        if resource.get("resourceType") != rtype:
            raise BadRequest(
                f"request.url names {rtype} but the resource is another type", expression=url
            )
        if rid is not None and resource.get("id") not in (None, rid):
            raise BadRequest(
                "the resource's id must equal the id in request.url",
                expression=f"{where}.resource.id",
            )
    else:
        resource = None
    if_none_exist = request.get("ifNoneExist")
    if if_none_exist is not None and method != "POST":
        raise BadRequest("ifNoneExist belongs to POST entries", expression=f"{where}.request")
    full_url = entry.get("fullUrl")
    return EntryRequest(
        index,
        method,
        rtype,
        rid,
        criteria,
        full_url if isinstance(full_url, str) else None,
        resource,
        request.get("ifMatch"),
        if_none_exist if isinstance(if_none_exist, str) and if_none_exist else None,
    )
