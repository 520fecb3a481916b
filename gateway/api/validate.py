"""``$validate``: check a resource against FHIR R4 and Brobygger's profiles without storing it.

``POST /fhir/$validate``, ``POST /fhir/{type}/$validate`` and ``POST /fhir/{type}/{id}/$validate``
(FHIR R4 Resource-validate). The body is the resource itself, or a Parameters resource whose
``resource`` parameter holds it; a Parameters body without a ``resource`` parameter *is* the
resource to validate (a Parameters resource can be validated like any other). ``mode``
(``create | update | delete | profile``) and ``profile`` come from the Parameters or the query.
The answer is an OperationOutcome with status 200 — problems in the resource are the result,
not an error of the request (FHIR R4 §3.1.0.9.5); only an unreadable request is 4xx.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.fhir import RESOURCE_BODY, _authorize, _body, _check_id, _check_type
from gateway.api.responses import fhir_response
from gateway.deps import DataDep, PrincipalDep, SettingsDep
from gateway.errors import BadRequest, NotFound
from gateway.jobs import offload_for, validation_report
from profiles import ValidationIssue, ValidationReport, outcome
from profiles.fhir_release import is_resource_type

router = APIRouter(tags=["FHIR"])

_MODES = ("create", "update", "delete", "profile")


def _check_validatable_type(rtype: str) -> None:
    # Any R4 resource can be validated (Bundle, Parameters, ...), not only the stored types.
    if not is_resource_type(rtype):
        raise NotFound(f"'{rtype}' is not a FHIR R4 resource type", expression=rtype)


def _parameters(
    body: dict[str, Any] | None, request: Request
) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """(resource, mode, profile) from the body and the query."""
    mode = request.query_params.get("mode")
    profile = request.query_params.get("profile")
    if body is None:
        return None, mode, profile
    parameters = body.get("parameter") if body.get("resourceType") == "Parameters" else None
    if not isinstance(parameters, list) or not any(
        isinstance(p, dict) and p.get("name") == "resource" for p in parameters
    ):
        return body, mode, profile
    resource: dict[str, Any] | None = None
    for index, parameter in enumerate(parameters):
        if not isinstance(parameter, dict):
            continue
        name = parameter.get("name")
        if name == "resource":
            if not isinstance(parameter.get("resource"), dict):
                raise BadRequest(
                    "the 'resource' parameter must hold a resource",
                    expression=f"Parameters.parameter[{index}].resource",
                )
            resource = parameter["resource"]
        elif name == "mode":
            mode = parameter.get("valueCode") or parameter.get("valueString") or mode
        elif name == "profile":
            profile = (
                parameter.get("valueUri")
                or parameter.get("valueCanonical")
                or parameter.get("valueString")
                or profile
            )
    return resource, mode, profile


def _mode_issues(
    mode: str | None, resource: dict[str, Any], url_id: str | None
) -> list[ValidationIssue]:
    rtype = str(resource.get("resourceType"))
    if mode == "update" and not resource.get("id"):
        return [ValidationIssue("error", "required", f"{rtype}.id", "an update needs the id")]
    if mode == "update" and url_id is not None and resource.get("id") != url_id:
        return [
            ValidationIssue(
                "error", "invalid", f"{rtype}.id", "the resource's id must equal the id in the URL"
            )
        ]
    return []


async def _validate(
    request: Request,
    principal: Any,
    settings: Any,
    data: Any,
    expected_type: str | None,
    resource_id: str | None,
) -> Response:
    has_body = bool(request.headers.get("content-length", "0") != "0") or bool(
        request.headers.get("transfer-encoding")
    )
    body = await _body(request, settings) if has_body else None
    resource, mode, profile = _parameters(body, request)
    if mode is not None and mode not in _MODES:
        raise BadRequest(f"mode must be one of {', '.join(_MODES)}", expression="mode")
    if mode == "profile" and profile is None:
        raise BadRequest("mode 'profile' needs a profile parameter", expression="profile")
    if mode == "delete":
        if expected_type is None or resource_id is None:
            raise BadRequest(
                "mode 'delete' validates an existing resource: POST [type]/[id]/$validate",
                expression="mode",
            )
        _authorize(principal, expected_type, "read")
        await data.read(expected_type, resource_id)  # 404 when absent or not visible
        return fhir_response(outcome(ValidationReport()))
    if resource is None:
        if expected_type is None or resource_id is None:
            raise BadRequest("$validate needs a resource", expression="resource")
        _authorize(principal, expected_type, "read")
        resource = await data.read(expected_type, resource_id)
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
    size = int(request.headers.get("content-length") or 0)
    report = await offload_for(settings).run(size, validation_report, resource, profile)
    extra = _mode_issues(mode, resource, resource_id)
    if extra:
        report = ValidationReport((*report.issues, *extra), report.profiles)
    return fhir_response(outcome(report))


@router.post("/$validate", openapi_extra=RESOURCE_BODY)
async def validate_any(
    request: Request, principal: PrincipalDep, data: DataDep, settings: SettingsDep
) -> Response:
    """Validate any resource."""
    return await _validate(request, principal, settings, data, None, None)


@router.post("/{resource_type}/$validate", openapi_extra=RESOURCE_BODY)
async def validate_type(
    resource_type: str,
    request: Request,
    principal: PrincipalDep,
    data: DataDep,
    settings: SettingsDep,
) -> Response:
    """Validate a resource of this type."""
    _check_validatable_type(resource_type)
    return await _validate(request, principal, settings, data, resource_type, None)


@router.post("/{resource_type}/{resource_id}/$validate")
async def validate_instance(
    resource_type: str,
    resource_id: str,
    request: Request,
    principal: PrincipalDep,
    data: DataDep,
    settings: SettingsDep,
) -> Response:
    """Validate a resource as the new content of this instance (or, without a body, as stored)."""
    _check_type(resource_type)  # instances exist only of the types the gateway stores
    _check_id(resource_id)
    return await _validate(request, principal, settings, data, resource_type, resource_id)
