"""What a mapping reports: issues (where, which rule, how bad) and the one error it raises.

Error tree::

    MappingError(ValueError)   the document breaks its format's spec; ``issues`` say where

Issue texts name the element (XPath) or form field and the rule, never the offending value:
values may be health data (CPR numbers, names, diagnoses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True, slots=True)
class MappingIssue:
    """One finding: ``expression`` is an XPath (or form field path), ``text`` the rule."""

    severity: Severity
    expression: str
    text: str


class MappingError(ValueError):
    """The document does not follow its format; ``issues`` lists every rule it broke."""

    def __init__(self, issues: list[MappingIssue]) -> None:
        super().__init__("; ".join(f"{i.expression}: {i.text}" for i in issues))
        self.issues = issues


# Warnings listed per document: unknown content repeated thousands of times is reported by
# count, not one issue each (the answer would be bigger than the document).
MAX_WARNINGS = 100


class IssueCollector:
    """Collects issues while a document is read, so one run reports all of them."""

    def __init__(self) -> None:
        self.issues: list[MappingIssue] = []
        self._warnings = 0

    def error(self, expression: str, text: str) -> None:
        self.issues.append(MappingIssue("error", expression, text))

    def fatal(self, expression: str, text: str) -> None:
        self.issues.append(MappingIssue("fatal", expression, text))

    def warning(self, expression: str, text: str) -> None:
        self._warnings += 1
        if self._warnings <= MAX_WARNINGS:
            self.issues.append(MappingIssue("warning", expression, text))
        elif self._warnings == MAX_WARNINGS + 1:
            self.issues.append(
                MappingIssue("warning", "/", f"more than {MAX_WARNINGS} warnings; the rest untold")
            )

    @property
    def has_errors(self) -> bool:
        return any(i.severity in ("error", "fatal") for i in self.issues)

    @property
    def warnings(self) -> list[MappingIssue]:
        return [i for i in self.issues if i.severity in ("warning", "information")]

    def raise_if_errors(self) -> None:
        """Raise ``MappingError`` with the errors first, then the warnings seen so far."""
        if self.has_errors:
            errors = [i for i in self.issues if i.severity in ("error", "fatal")]
            raise MappingError(errors + self.warnings)
