"""The gateway's error tree; one handler turns every error into an OperationOutcome.

    GatewayError                      500 exception / processing
    ├── BadRequest                    400 invalid / structure / value
    │   ├── InvalidResource           400 (422 on create/update) invalid, with element paths
    │   ├── UnknownSearchParameter    400 not-supported
    │   ├── LimitExceeded             400 too-costly (a structural limit; names the setting)
    │   └── UnprocessableResource     422 processing
    │       └── BudgetExceeded        422 too-costly (the per-document CPU budget)
    ├── Unauthorized                  401 login
    ├── Forbidden                     403 forbidden
    ├── NotFound                      404 not-found
    ├── Gone                          410 deleted
    ├── MethodNotAllowed              405 not-supported
    ├── Conflict                      409 conflict
    ├── PreconditionFailed            412 conflict (If-Match / If-None-Exist)
    ├── UnsupportedMediaType          415 not-supported
    ├── PayloadTooLarge               413 too-costly
    └── StoreUnavailable              503 transient

Foreign errors (pydantic, SQLAlchemy, lxml, httpx) are translated where they are raised,
``raise ... from exc``, so the HTTP layer only ever sees this tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: severity, code, text and where (FHIRPath/XPath/param)."""

    code: str
    text: str
    expression: str | None = None
    severity: str = "error"

    def to_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.text,
        }
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


class GatewayError(Exception):
    """Base of every error the gateway reports; carries the HTTP status and issues."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "exception"

    def __init__(
        self,
        text: str,
        *,
        expression: str | None = None,
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(text)
        self.issues = issues or [Issue(self.code, text, expression)]
        self.headers = headers or {}

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequest(GatewayError):
    status = 400
    code = "invalid"


class InvalidResource(BadRequest):
    status = 400
    code = "invalid"


class UnprocessableResource(BadRequest):
    """A syntactically fine body that breaks FHIR rules (create/update answer 422)."""

    status = 422
    code = "processing"


class UnknownSearchParameter(BadRequest):
    code = "not-supported"


class LimitExceeded(BadRequest):
    """A structural limit on the input (JSON depth, XML attributes, OR values, …).

    The client's own doing: a 400, never a 503 (a client told to retry would retry forever).
    """

    code = "too-costly"


class BudgetExceeded(UnprocessableResource):
    """The document used up its CPU budget before it was mapped and validated."""

    code = "too-costly"


class Unauthorized(GatewayError):
    status = 401
    code = "login"


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    code = "not-found"


class Gone(GatewayError):
    status = 410
    code = "deleted"


class MethodNotAllowed(GatewayError):
    status = 405
    code = "not-supported"


class Conflict(GatewayError):
    status = 409
    code = "conflict"


class PreconditionFailed(GatewayError):
    status = 412
    code = "conflict"


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "not-supported"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "too-costly"


class StoreUnavailable(GatewayError):
    status = 503
    code = "transient"


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def informational_outcome(text: str) -> dict[str, Any]:
    return operation_outcome([Issue("informational", text, severity="information")])
