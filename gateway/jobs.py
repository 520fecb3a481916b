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
from profiles import outcome, validate
from profiles.fhir_release import ResourceInvalid, validate_resource

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


def validated(data: dict[str, Any], expected: str | None, *, status_422: bool) -> dict[str, Any]:
    """The resource checked against the R4 models (normalised), or a 400/422 naming where."""
    try:
        return validate_resource(data, expected)
    except ResourceInvalid as exc:
        issues = [
            Issue("invalid" if not status_422 else "structure", i.message, i.expression)
            for i in exc.issues
        ]
        error_class = UnprocessableResource if status_422 else InvalidResource
        raise error_class("the resource is not valid FHIR R4", issues=issues) from exc
    except RecursionError as exc:  # a last line: the JSON limits keep bodies far from this
        raise BadRequest("the resource nests too deep to check", expression="$") from exc


def read_resource(raw: bytes, limits: JsonLimits, expected: str | None) -> dict[str, Any]:
    """Parse and validate one resource body (the job of create and update)."""
    return validated(resource_object(raw, limits), expected, status_422=False)


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


def validation_outcome(resource: dict[str, Any], profile: str | None) -> dict[str, Any]:
    """``$validate``'s answer for one resource."""
    try:
        return outcome(validate(resource, profile=profile))
    except RecursionError as exc:
        raise BadRequest("the resource nests too deep to check", expression="$") from exc


__all__ = [
    "Offload",
    "entry_requests",
    "json_limits",
    "offload_for",
    "read_resource",
    "resource_object",
    "validated",
    "validation_outcome",
]
