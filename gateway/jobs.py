"""The CPU-heavy steps of a request, as plain functions a worker process can run.

Each takes the raw body and plain limits and returns plain data (or raises a
``GatewayError``): the same function runs inline for a small body and in the worker pool
(``gateway.workers``) for a large one. :class:`Offload` decides which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.errors import BadRequest, InvalidResource, Issue, UnprocessableResource
from gateway.limits import JsonLimits, json_limits, load_json
from gateway.settings import Settings
from gateway.workers import CpuPool, cpu_pool
from profiles import ValidationReport, validate, validate_incoming
from profiles.fhir_release import is_resource_type

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Offload:
    """Where a request's CPU-heavy step runs: inline when the body is small, else a worker."""

    pool: CpuPool
    budget_seconds: float
    inline_bytes: int

    async def run(self, size: int, fn: Callable[..., T], *args: Any) -> T:
        if size <= self.inline_bytes:
            return fn(*args)
        return await self.pool.run(self.budget_seconds, fn, *args)

    async def always(self, fn: Callable[..., T], *args: Any) -> T:
        """In a worker whatever the size (documents: their cost is not their size)."""
        return await self.pool.run(self.budget_seconds, fn, *args)


def offload_for(settings: Settings) -> Offload:
    return Offload(
        cpu_pool(settings.cpu_workers),
        settings.document_cpu_budget_seconds,
        settings.inline_body_bytes,
    )


def resource_object(raw: bytes, limits: JsonLimits) -> dict[str, Any]:
    """The body as a JSON object, within the limits."""
    data = load_json(raw, limits)
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object (a FHIR resource)", expression="$")
    return data


def checked(
    data: dict[str, Any], expected: str | None, *, status_422: bool
) -> tuple[dict[str, Any], ValidationReport]:
    """Base R4 and every profile the resource claims that we know (``validate_incoming``), or
    a 400/422 naming where; with the report (its warnings: an unknown claimed profile, …)."""
    rtype = data.get("resourceType")
    if not isinstance(rtype, str) or not is_resource_type(rtype):
        raise InvalidResource(
            "the resource is not valid FHIR R4",
            issues=[Issue("invalid", "missing or not a FHIR R4 resource type", "resourceType")],
        )
    if expected is not None and rtype != expected:
        raise InvalidResource(
            "the resource is not valid FHIR R4",
            issues=[
                Issue("invalid", f"expected {expected}, the body says {rtype}", "resourceType")
            ],
        )
    try:
        report = validate_incoming(data, channel="rest")
    except RecursionError as exc:  # a last line: the JSON limits keep bodies far from this
        raise BadRequest("the resource nests too deep to check", expression="$") from exc
    if not report.ok:
        issues = [
            Issue("invalid" if not status_422 else i.code, i.text, i.expression)
            for i in report.errors
        ]
        error_class = UnprocessableResource if status_422 else InvalidResource
        raise error_class("the resource is not valid FHIR R4 or its profiles", issues=issues)
    return data, report


def validated(data: dict[str, Any], expected: str | None, *, status_422: bool) -> dict[str, Any]:
    """``checked`` without the report."""
    return checked(data, expected, status_422=status_422)[0]


def read_resource(
    raw: bytes, limits: JsonLimits, expected: str | None
) -> tuple[dict[str, Any], ValidationReport]:
    """Parse and check one resource body (the job of create, update and transactions)."""
    return checked(resource_object(raw, limits), expected, status_422=False)


def entry_requests(raw: bytes, limits: JsonLimits) -> list[tuple[int, str, str]]:
    """A transaction/batch body's entries as (index, method, url): what to authorise before
    the Bundle is validated."""
    body = resource_object(raw, limits)
    if body.get("resourceType") != "Bundle" or body.get("type") not in ("transaction", "batch"):
        raise BadRequest(
            "POST /fhir takes a Bundle of type transaction or batch", expression="Bundle.type"
        )
    entries = body.get("entry", [])
    out: list[tuple[int, str, str]] = []
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        request = entry.get("request", {}) if isinstance(entry, dict) else {}
        if not isinstance(request, dict):
            continue
        out.append((i, str(request.get("method", "GET")).upper(), str(request.get("url", ""))))
    return out


def validation_report(resource: dict[str, Any], profile: str | None) -> ValidationReport:
    """``$validate``'s report for one resource."""
    try:
        return validate(resource, profile=profile)
    except RecursionError as exc:
        raise BadRequest("the resource nests too deep to check", expression="$") from exc


__all__ = [
    "Offload",
    "checked",
    "entry_requests",
    "json_limits",
    "offload_for",
    "read_resource",
    "resource_object",
    "validated",
    "validation_report",
]
