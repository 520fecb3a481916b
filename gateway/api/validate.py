"""``$validate``: check a resource against FHIR R4 and Brobygger's profiles without storing it.

``POST /fhir/$validate`` and ``POST /fhir/{type}/$validate`` take the resource itself or a
Parameters resource (``resource``, optional ``profile``); ``?profile=`` also names a profile.
The answer is always an OperationOutcome with status 200 — problems in the resource are the
result, not an error of the request (FHIR R4 §3.1.0.9.5); only an unreadable request is 4xx.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.fhir import RESOURCE_BODY, _check_type, _raw_body
from gateway.api.responses import fhir_response
from gateway.deps import PrincipalDep, SettingsDep
from gateway.errors import BadRequest
from gateway.jobs import offload_for, resource_object, validation_outcome
from gateway.limits import json_limits
from profiles.fhir_release import is_resource_type

router = APIRouter(tags=["FHIR"])


def _unwrap(body: dict[str, Any], profile: str | None) -> tuple[dict[str, Any], str | None]:
    if body.get("resourceType") != "Parameters":
        return body, profile
    resource: dict[str, Any] | None = None
    for parameter in body.get("parameter", []):
        if parameter.get("name") == "resource" and isinstance(parameter.get("resource"), dict):
            resource = parameter["resource"]
        elif parameter.get("name") == "profile":
            profile = parameter.get("valueUri") or parameter.get("valueCanonical") or profile
    if resource is None:
        raise BadRequest("Parameters needs a 'resource' parameter", expression="Parameters")
    return resource, profile


async def _validate(request: Request, settings: Any, expected_type: str | None) -> Response:
    raw = await _raw_body(request, settings)
    offload = offload_for(settings)
    body = await offload.run(len(raw), resource_object, raw, json_limits(settings))
    resource, profile = _unwrap(body, request.query_params.get("profile"))
    if expected_type is not None and resource.get("resourceType") != expected_type:
        raise BadRequest(
            f"$validate on {expected_type} got a {resource.get('resourceType')}",
            expression="resourceType",
        )
    if not is_resource_type(str(resource.get("resourceType", ""))):
        raise BadRequest(
            "resourceType is missing or not a FHIR R4 resource type", expression="resourceType"
        )
    # Profile checks evaluate FHIRPath: a large resource is checked in a worker.
    return fhir_response(await offload.run(len(raw), validation_outcome, resource, profile))


@router.post("/$validate", openapi_extra=RESOURCE_BODY)
async def validate_any(
    request: Request, _principal: PrincipalDep, settings: SettingsDep
) -> Response:
    """Validate any resource."""
    return await _validate(request, settings, None)


@router.post("/{resource_type}/$validate", openapi_extra=RESOURCE_BODY)
async def validate_type(
    resource_type: str, request: Request, _principal: PrincipalDep, settings: SettingsDep
) -> Response:
    """Validate a resource of this type."""
    _check_type(resource_type)
    return await _validate(request, settings, resource_type)
