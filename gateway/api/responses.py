"""FHIR JSON responses (``application/fhir+json``)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from profiles import fhir_json

FHIR_JSON = "application/fhir+json"


class FhirResponse(Response):
    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return fhir_json.dumps(content).encode("utf-8")


def fhir_response(
    content: Any, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> FhirResponse:
    return FhirResponse(content, status_code=status_code, headers=headers)
