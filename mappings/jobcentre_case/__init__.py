"""Job-centre sickness-benefit case export → FHIR, per ../shared/formats/jobcentre-case.md.

Every export is the whole case as of ``Opdateret``: the store refuses one older than what it
holds (``MappingResult.source.issued``) and marks resources of the case (``meta.tag`` =
``source.key``) that a newer export no longer contains as ``entered-in-error``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from lxml import etree

from mappings._errors import IssueCollector
from mappings._result import MappingResult
from mappings._xml import read_tree
from mappings.jobcentre_case._model import SicknessBenefitCase
from mappings.jobcentre_case._read import NAMESPACE, ROOT, SHAPE, read_case
from mappings.jobcentre_case._to_fhir import FORMAT, to_fhir_bundle


def map_jobcentre_case(
    root: etree._Element, xml_bytes: bytes, *, now: datetime, sender: str | None
) -> MappingResult:
    """A parsed case export → MappingResult, or ``MappingError`` listing every broken rule."""
    issues = IssueCollector()
    case = read_case(read_tree(root, SHAPE, NAMESPACE, issues), issues, now)
    issues.raise_if_errors()
    assert case is not None  # noqa: S101 - no errors means a complete model
    result = to_fhir_bundle(case, xml_bytes, now=now, sender=sender)
    return dataclasses.replace(result, warnings=issues.warnings)


__all__ = [
    "FORMAT",
    "NAMESPACE",
    "ROOT",
    "SicknessBenefitCase",
    "map_jobcentre_case",
    "to_fhir_bundle",
]
