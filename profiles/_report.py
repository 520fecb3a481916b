"""What validation finds, and the OperationOutcome ``$validate`` answers with.

Issue texts name the rule (its key and human text) and the element, never a value: the values
may be health data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    """One finding: how bad, its FHIR issue-type code, where (FHIRPath) and which rule."""

    severity: Severity
    code: str
    expression: str
    text: str
    key: str | None = None

    def rebased(self, root: str, prefix: str) -> ValidationIssue:
        """The same issue with ``root`` (a resource type) replaced by ``prefix``."""
        if self.expression == root or self.expression.startswith((f"{root}.", f"{root}[")):
            return ValidationIssue(
                self.severity,
                self.code,
                prefix + self.expression[len(root) :],
                self.text,
                self.key,
            )
        return self


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """All issues found and the profiles that were applied (canonical ``url|version``)."""

    issues: tuple[ValidationIssue, ...] = ()
    profiles: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when nothing is an error or fatal (warnings do not fail validation)."""
        return not self.errors

    @property
    def errors(self) -> tuple[ValidationIssue, ...]:
        return tuple(i for i in self.issues if i.severity in ("fatal", "error"))


def outcome(report: ValidationReport) -> dict[str, Any]:
    """The report as an OperationOutcome; one informational issue when there is nothing to say."""
    issues: list[dict[str, Any]] = [
        {
            "severity": issue.severity,
            "code": issue.code,
            "diagnostics": issue.text,
            "expression": [issue.expression],
        }
        for issue in report.issues
    ]
    if not issues:
        issues = [{"severity": "information", "code": "informational", "diagnostics": "All OK"}]
    return {"resourceType": "OperationOutcome", "issue": issues}
