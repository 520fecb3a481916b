"""GP medical statements and the job centre's requests (form carrier XML) → FHIR.

Per ../shared/formats/gp-statement.md. Linking a statement to its request needs the stored
request, so the store does it: ``MappingResult.answers_request`` names the request, and
``complete_request_task`` is the pure update of the request's Task.
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import datetime
from typing import Any

from lxml import etree

from mappings._errors import IssueCollector
from mappings._result import MappingResult
from mappings._values import fhir_instant
from mappings._xml import read_tree
from mappings.gp_statement._forms import FORMS, FormSpec
from mappings.gp_statement._model import FilledForm
from mappings.gp_statement._read import NAMESPACE, ROOT, SHAPE, read_form
from mappings.gp_statement._to_fhir import FORMAT, to_fhir_bundle


def map_gp_statement(
    root: etree._Element, xml_bytes: bytes, *, now: datetime, sender: str | None
) -> MappingResult:
    """A parsed form document → MappingResult, or ``MappingError`` listing every broken rule."""
    issues = IssueCollector()
    form = read_form(read_tree(root, SHAPE, NAMESPACE, issues), issues)
    issues.raise_if_errors()
    assert form is not None  # noqa: S101 - no errors means a complete model
    result = to_fhir_bundle(form, xml_bytes, now=now, sender=sender)
    return dataclasses.replace(result, warnings=issues.warnings + result.warnings)


def complete_request_task(
    task: dict[str, Any], response_reference: str, *, now: datetime
) -> dict[str, Any]:
    """The request's Task once the statement arrived: ``completed``, output → the response."""
    done = copy.deepcopy(task)
    done["status"] = "completed"
    done["lastModified"] = fhir_instant(now)
    done["output"] = [
        {
            "type": {"text": "medical statement"},
            "valueReference": {"reference": response_reference},
        }
    ]
    return done


__all__ = [
    "FORMAT",
    "FORMS",
    "NAMESPACE",
    "ROOT",
    "FilledForm",
    "FormSpec",
    "complete_request_task",
    "map_gp_statement",
    "to_fhir_bundle",
]
