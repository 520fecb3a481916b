"""``Measure/{id}/$evaluate-measure`` (GET and POST) and the Measures themselves, at /fhir."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.responses import fhir_response
from gateway.deps import DatabaseDep, PrincipalDep, StoreDep
from gateway.errors import BadRequest, Forbidden
from gateway.figures._report import measure_or_404, month_of
from gateway.figures._service import evaluate_measure
from gateway.participants.directory import ParticipantDirectory
from profiles._measures import get_measure, measure_ids

router = APIRouter(tags=["Key figures"])
_PARAMETERS = ("periodStart", "periodEnd", "subject", "reportType")


def _check(principal: Any) -> None:
    if not principal.allows("MeasureReport", "read"):
        raise Forbidden("the access token has no scope to read MeasureReport")


async def _parameters(request: Request) -> dict[str, str]:
    found = {k: v for k, v in request.query_params.items() if k in _PARAMETERS}
    if request.method == "POST" and (await request.body()).strip():
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise BadRequest("the body is not JSON (a Parameters resource)") from None
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise BadRequest("the body must be a Parameters resource", expression="resourceType")
        for i, parameter in enumerate(body.get("parameter") or []):
            name = parameter.get("name") if isinstance(parameter, dict) else None
            if name not in _PARAMETERS:
                raise BadRequest(
                    f"unknown parameter for $evaluate-measure: {str(name)[:40]!r}",
                    expression=f"Parameters.parameter[{i}].name",
                )
            value = next(
                (v for k, v in parameter.items() if k.startswith("value") and isinstance(v, str)),
                None,
            )
            if value is None and isinstance(parameter.get("valueReference"), dict):
                value = parameter["valueReference"].get("reference")
            if value is not None:
                found[str(name)] = str(value)
    if found.get("reportType", "summary") != "summary":
        raise BadRequest(
            "only summary reports: no individual data leaves the gateway", expression="reportType"
        )
    return found


@router.get("/Measure/{measure_id}/$evaluate-measure")
@router.post("/Measure/{measure_id}/$evaluate-measure")
async def evaluate(
    request: Request,
    measure_id: str,
    principal: PrincipalDep,
    store: StoreDep,
    database: DatabaseDep,
) -> Response:
    """A summary MeasureReport for one calendar month, the caller's organisation or municipality."""
    _check(principal)
    measure_or_404(measure_id)
    parameters = await _parameters(request)
    month = month_of(parameters.get("periodStart"), parameters.get("periodEnd"))
    directory = ParticipantDirectory(database)
    caller = await directory.get(principal.participant)
    report = await evaluate_measure(
        store, directory, caller, measure_id, month, parameters.get("subject")
    )
    return fhir_response(report)


@router.get("/Measure/{measure_id}")
async def read_measure(measure_id: str, principal: PrincipalDep) -> Response:
    _check(principal)
    return fhir_response(measure_or_404(measure_id))


@router.get("/Measure")
async def list_measures(principal: PrincipalDep) -> Response:
    _check(principal)
    entries = [{"resource": get_measure(i)} for i in measure_ids()]
    return fhir_response(
        {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
    )
