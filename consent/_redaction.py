"""Diagnosis detection and removal, for what an employer may receive (never a diagnosis).

One walker does both: it returns the very same object when nothing diagnostic is found, and a
rebuilt value otherwise. Diagnostic is: a Condition (also contained), a Coding / Identifier in
a diagnosis system (the whole CodeableConcept goes, its text too), a Reference to a Condition,
the reason elements (``reasonCode``, ``reasonReference``, ``diagnosis``, ``addresses``), and in a
QuestionnaireResponse the diagnosis items of the form (``DIAGNOSIS_ITEM_LINK_IDS``). Containers
left empty by a removal (an answer, an extension without value, an item without answer) go too.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, Final

from consent._codes import DIAGNOSIS_ELEMENTS, DIAGNOSIS_ITEM_LINK_IDS, DIAGNOSIS_SYSTEMS
from consent._resources import Resource, local_reference

_DROP: Final = object()
_NON_ALNUM = re.compile(r"[^A-Z0-9]")


def diagnosis_link_ids(questionnaire: Any) -> frozenset[str]:
    """The diagnosis item linkIds of the form a QuestionnaireResponse answers."""
    if not isinstance(questionnaire, str):
        return frozenset()
    segment = questionnaire.split("|", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    form = _NON_ALNUM.sub("", segment.upper())
    for code, link_ids in DIAGNOSIS_ITEM_LINK_IDS.items():
        if form.endswith(code):
            return link_ids
    return frozenset()


def _is_diagnostic_node(node: Mapping[str, Any], link_ids: frozenset[str]) -> bool:
    if node.get("resourceType") == "Condition":
        return True
    if node.get("system") in DIAGNOSIS_SYSTEMS:
        return True
    coding = node.get("coding")
    if isinstance(coding, list) and any(
        isinstance(c, Mapping) and c.get("system") in DIAGNOSIS_SYSTEMS for c in coding
    ):
        return True
    if "reference" in node or node.get("type") == "Condition":
        local = local_reference(node.get("reference"))
        if node.get("type") == "Condition" or (
            local is not None and local.startswith("Condition/")
        ):
            return True
    return bool(link_ids) and node.get("linkId") in link_ids


def _clean(value: Any, link_ids: frozenset[str]) -> Any:
    if isinstance(value, list):
        kept: list[Any] = []
        changed = False
        for item in value:
            cleaned = _clean(item, link_ids)
            if cleaned is _DROP:
                changed = True
                continue
            changed = changed or cleaned is not item
            kept.append(cleaned)
        if not changed:
            return value
        return kept if kept else _DROP
    if not isinstance(value, Mapping):
        return value
    if _is_diagnostic_node(value, link_ids):
        return _DROP
    result: dict[str, Any] | None = None
    for key, child in value.items():
        cleaned = _DROP if key in DIAGNOSIS_ELEMENTS else _clean(child, link_ids)
        if cleaned is child:
            continue
        if result is None:
            result = dict(value)
        if cleaned is _DROP:
            del result[key]
        else:
            result[key] = cleaned
    if result is None:
        return value
    if not result:
        return _DROP
    lost_value = any(k.startswith("value") for k in value) and not any(
        k.startswith("value") for k in result
    )
    if "url" in result and lost_value and "extension" not in result:
        return _DROP  # an extension whose value was diagnostic
    if "linkId" in result and "answer" in value and "answer" not in result:
        if "item" not in result:
            return _DROP  # a questionnaire item whose every answer was diagnostic
    return result


def _redact(resource: Resource) -> Any:
    link_ids: frozenset[str] = frozenset()
    if resource.get("resourceType") == "QuestionnaireResponse":
        link_ids = diagnosis_link_ids(resource.get("questionnaire"))
    return _clean(resource, link_ids)


def contains_diagnosis(resource: Resource) -> bool:
    """True when the resource holds anything an employer must not see (see module docstring)."""
    return _redact(resource) is not resource


def redact_diagnoses(resource: Resource) -> dict[str, Any] | None:
    """A copy without diagnostic content; None when nothing disclosable would remain.

    Nothing remains when the resource is a Condition, when its own ``code`` was diagnostic, or
    when a QuestionnaireResponse lost all its items. An unchanged resource is returned as is
    (not copied); callers must not mutate it.
    """
    cleaned = _redact(resource)
    if cleaned is resource:
        return resource if isinstance(resource, dict) else dict(resource)
    if cleaned is _DROP or not isinstance(cleaned, dict):
        return None
    if "code" in resource and "code" not in cleaned:
        return None
    if resource.get("resourceType") == "QuestionnaireResponse" and resource.get("item"):
        if not cleaned.get("item"):
            return None
    return copy.deepcopy(cleaned)
