"""Rehabilitation plan (MedCom GGOP XML) → FHIR, per ../shared/formats/rehab-plan-ggop.md."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from lxml import etree

from mappings._errors import IssueCollector
from mappings._result import MappingResult
from mappings._xml import read_tree
from mappings.rehab_plan._model import RehabPlan
from mappings.rehab_plan._read import NAMESPACE, ROOT, SHAPE, read_rehab_plan
from mappings.rehab_plan._to_fhir import FORMAT, to_fhir_bundle


def map_rehab_plan(
    root: etree._Element, xml_bytes: bytes, *, now: datetime, sender: str | None
) -> MappingResult:
    """A parsed GGOP document → MappingResult, or ``MappingError`` listing every broken rule."""
    issues = IssueCollector()
    plan = read_rehab_plan(read_tree(root, SHAPE, NAMESPACE, issues), issues)
    issues.raise_if_errors()
    assert plan is not None  # noqa: S101 - no errors means a complete model
    result = to_fhir_bundle(plan, xml_bytes, now=now, sender=sender)
    return dataclasses.replace(result, warnings=issues.warnings)


__all__ = ["FORMAT", "NAMESPACE", "ROOT", "RehabPlan", "map_rehab_plan", "to_fhir_bundle"]
