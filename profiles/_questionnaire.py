"""A QuestionnaireResponse checked against its Questionnaire: the form is the authority.

linkIds must exist where the response puts them, answers must have the item's type (and a
choice one of its options or a code of its value set), required items must be answered and
items that do not repeat must not. Texts name linkIds, never answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from profiles._registry import STRUCTURE_DEFINITION_BASE, registry
from profiles._report import ValidationIssue, ValidationReport

# Questionnaire item type → the answer value[x] it takes (R4 "questionnaire-answers" table).
ANSWER_KEYS: Mapping[str, frozenset[str]] = {
    "boolean": frozenset({"valueBoolean"}),
    "decimal": frozenset({"valueDecimal"}),
    "integer": frozenset({"valueInteger"}),
    "date": frozenset({"valueDate"}),
    "dateTime": frozenset({"valueDateTime"}),
    "time": frozenset({"valueTime"}),
    "string": frozenset({"valueString"}),
    "text": frozenset({"valueString"}),
    "url": frozenset({"valueUri"}),
    "choice": frozenset({"valueCoding"}),
    "open-choice": frozenset({"valueCoding", "valueString"}),
    "attachment": frozenset({"valueAttachment"}),
    "reference": frozenset({"valueReference"}),
    "quantity": frozenset({"valueQuantity"}),
}
DIAGNOSES_FORBIDDEN_URL = f"{STRUCTURE_DEFINITION_BASE}diagnoses-forbidden"
DIAGNOSIS_SYSTEMS = frozenset(
    {"urn:oid:1.2.208.176.2.4", "urn:oid:1.2.208.176.2.4.12", "http://hl7.org/fhir/sid/icd-10"}
)

Item = Mapping[str, Any]


def _value_set_systems(url: str) -> dict[str, frozenset[str] | None] | None:
    """Our ValueSet's included systems → their listed codes (None: the whole system)."""
    value_set = registry().find(url, "ValueSet")
    if value_set is None:
        return None
    out: dict[str, frozenset[str] | None] = {}
    for include in value_set.get("compose", {}).get("include", []):
        concepts = include.get("concept")
        out[include["system"]] = (
            frozenset(c["code"] for c in concepts) if concepts is not None else None
        )
    return out


class _Checker:
    def __init__(self, questionnaire: Mapping[str, Any]) -> None:
        self.questionnaire = questionnaire
        self.issues: list[ValidationIssue] = []
        self.all_links = set(self._link_ids(questionnaire.get("item", [])))
        self.no_diagnoses = any(
            e.get("url") == DIAGNOSES_FORBIDDEN_URL and e.get("valueBoolean") is True
            for e in questionnaire.get("extension", [])
        )

    def _link_ids(self, items: Sequence[Item]) -> list[str]:
        out: list[str] = []
        for item in items:
            out.append(item["linkId"])
            out.extend(self._link_ids(item.get("item", [])))
        return out

    def error(self, code: str, where: str, text: str) -> None:
        self.issues.append(ValidationIssue("error", code, where, text))

    def items(self, q_items: Sequence[Item], r_items: Any, path: str) -> None:
        by_link = {item["linkId"]: item for item in q_items}
        seen: dict[str, int] = {}
        answered: set[str] = set()
        for index, r_item in enumerate(r_items if isinstance(r_items, list) else []):
            here = f"{path}.item[{index}]"
            link = r_item.get("linkId")
            q_item = by_link.get(link)
            if q_item is None:
                where = "is not expected here" if link in self.all_links else "is not in the form"
                self.error("structure", here, f"linkId {link} {where}")
                continue
            seen[link] = seen.get(link, 0) + 1
            if seen[link] == 2 and not q_item.get("repeats"):
                self.error("structure", here, f"item {link} does not repeat")
            if self.item(q_item, r_item, here):
                answered.add(link)
        for q_item in q_items:
            if q_item.get("required") and q_item["linkId"] not in answered:
                self.error("required", path, f"required item {q_item['linkId']} is not answered")

    def item(self, q_item: Item, r_item: Item, here: str) -> bool:
        """Check one response item; True when it counts as answered."""
        link, kind = q_item["linkId"], q_item["type"]
        answers = r_item.get("answer", [])
        if kind in ("group", "display"):
            if answers:
                self.error("structure", here, f"item {link} ({kind}) takes no answers")
            self.items(q_item.get("item", []), r_item.get("item", []), here)
            return bool(kind == "group")
        if r_item.get("item"):
            self.error("structure", here, f"item {link}: nested items belong under an answer")
        if len(answers) > 1 and not q_item.get("repeats"):
            self.error("structure", here, f"item {link} takes one answer")
        for index, answer in enumerate(answers):
            self.answer(q_item, answer, f"{here}.answer[{index}]")
            self.items(q_item.get("item", []), answer.get("item", []), f"{here}.answer[{index}]")
        return bool(answers)

    def answer(self, q_item: Item, answer: Mapping[str, Any], where: str) -> None:
        link, kind = q_item["linkId"], q_item["type"]
        values = [k for k in answer if k.startswith("value")]
        allowed = ANSWER_KEYS.get(kind, frozenset())
        if len(values) != 1 or values[0] not in allowed:
            expected = " or ".join(sorted(allowed)) or "no answer"
            self.error("value", where, f"item {link} ({kind}) needs {expected}")
            return
        coding = answer.get("valueCoding")
        if not isinstance(coding, Mapping):
            return
        system, code = coding.get("system"), coding.get("code")
        if self.no_diagnoses and system in DIAGNOSIS_SYSTEMS:
            self.error("business-rule", where, f"item {link}: this form never holds a diagnosis")
            return
        options = [o["valueCoding"] for o in q_item.get("answerOption", []) if "valueCoding" in o]
        if options:
            if not any(o.get("system") == system and o.get("code") == code for o in options):
                self.error("code-invalid", where, f"item {link}: not one of the item's options")
            return
        value_set = q_item.get("answerValueSet")
        if isinstance(value_set, str):
            included = _value_set_systems(value_set)
            if included is None:
                self.issues.append(
                    ValidationIssue(
                        "warning", "not-supported", where, f"item {link}: value set not known"
                    )
                )
            elif system not in included or (
                included[system] is not None and code not in (included[system] or ())
            ):
                self.error("code-invalid", where, f"item {link}: not in {value_set}")


def validate_questionnaire_response(
    response: Mapping[str, Any], questionnaire: Mapping[str, Any]
) -> ValidationReport:
    """Check a QuestionnaireResponse's items against the Questionnaire it answers."""
    checker = _Checker(questionnaire)
    checker.items(questionnaire.get("item", []), response.get("item", []), "QuestionnaireResponse")
    return ValidationReport(tuple(checker.issues))
