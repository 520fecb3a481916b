"""Form carrier XML → ``FilledForm``: gp-statement.md "Input" and its rejection rules."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

from mappings._codes import DIAGNOSIS_SYSTEMS
from mappings._errors import IssueCollector
from mappings._identifiers import (
    AUTHORISATION_RULE,
    CPR_RULE,
    CVR_RULE,
    EAN_RULE,
    MUNICIPALITY_RULE,
    SOR_RULE,
    YDER_RULE,
    is_valid_authorisation,
    is_valid_cpr,
    is_valid_cvr,
    is_valid_ean,
    is_valid_municipality,
    is_valid_sor,
    is_valid_yder,
    normalise_municipality,
)
from mappings._parties import OrganizationInfo
from mappings._values import (
    read_boolean,
    read_checked,
    read_code,
    read_date,
    read_datetime,
    read_decimal,
    read_id,
    read_integer,
)
from mappings._xml import Node, Shape, leaf
from mappings.gp_statement._forms import FORMS, FieldSpec, FormSpec
from mappings.gp_statement._model import Answer, AnswerValue, Doctor, FilledForm

NAMESPACE = "urn:brobygger:blanket:1"
ROOT = "Blanket"

_PARTY_CHILDREN = (
    leaf("Ydernummer", "?"),
    leaf("Kommunekode", "?"),
    leaf("SOR", "?"),
    leaf("EAN", "?"),
    leaf("CVR", "?"),
    leaf("Navn"),
)

SHAPE = Shape(
    ROOT,
    attributes=("kode", "version"),
    required_attributes=("kode", "version"),
    children=(
        Shape(
            "Meta",
            children=(
                leaf("BlanketId"),
                leaf("AnmodningId", "?"),
                leaf("Udstedt"),
                Shape("Afsender", children=_PARTY_CHILDREN),
                Shape("Laege", "?", children=(leaf("Navn"), leaf("Autorisation", "?"))),
                Shape("Modtager", children=_PARTY_CHILDREN),
                Shape("Borger", children=(leaf("CPR"), leaf("Navn"))),
            ),
        ),
        Shape(
            "Felter",
            children=(
                Shape(
                    "Felt",
                    "*",
                    attributes=("id", "type", "system"),
                    required_attributes=("id", "type"),
                    text=True,
                ),
            ),
        ),
    ),
)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
# Free text naming a diagnosis code: SKS-D (DM511, DF432) or dotted ICD-10 (M54.5).
_DIAGNOSIS_IN_TEXT = re.compile(r"\bD[A-Z]\d{2}[0-9A-Z]{0,4}\b|\b[A-Z]\d{2}\.\d{1,2}\b")
_MAX_HOURS = Decimal(168)


def field_path(felter: Node, felt: Node) -> str:
    """``/Blanket/Felter/Felt[@id='3.1']`` (the positional path for odd ids)."""
    link_id = felt.attributes.get("id", "")
    return f"{felter.path}/Felt[@id='{link_id}']" if _SAFE_ID.match(link_id) else felt.path


def _party(node: Node, kind: str, issues: IssueCollector) -> OrganizationInfo:
    def checked(name: str, check: Callable[[str], bool], rule: str) -> str | None:
        return read_checked(node.text_of(name), node.child_path(name), issues, check, rule)

    municipality = checked("Kommunekode", is_valid_municipality, MUNICIPALITY_RULE)
    return OrganizationInfo(
        name=node.text_of("Navn"),
        kind=kind,
        sor=checked("SOR", is_valid_sor, SOR_RULE),
        yder=checked("Ydernummer", is_valid_yder, YDER_RULE),
        municipality=normalise_municipality(municipality) if municipality else None,
        cvr=checked("CVR", is_valid_cvr, CVR_RULE),
        ean=checked("EAN", is_valid_ean, EAN_RULE),
    )


def _value(spec: FieldSpec, text: str, where: str, issues: IssueCollector) -> AnswerValue | None:
    if spec.kind == "text":
        return text
    if spec.kind == "date":
        return read_date(text, where, issues)
    if spec.kind == "boolean":
        return read_boolean(text, where, issues)
    if spec.kind == "integer":
        return read_integer(text, where, issues, -999_999_999, 999_999_999)
    if spec.kind == "decimal":
        return read_decimal(text, where, issues, Decimal(0), _MAX_HOURS)
    if spec.codes is not None:
        return read_code(text, where, issues, spec.codes)
    if any(ch.isspace() for ch in text) or len(text) > 20:
        issues.error(where, "must be a code (no spaces, at most 20 characters)")
        return None
    return text


def _answers(form: FormSpec, felter: Node, issues: IssueCollector) -> tuple[Answer, ...]:
    found: dict[str, list[Answer]] = {}
    for felt in felter.all("Felt"):
        where = field_path(felter, felt)
        link_id = felt.attributes.get("id")
        system = felt.attributes.get("system") or None
        if form.no_diagnoses and system in DIAGNOSIS_SYSTEMS:
            issues.fatal(where, f"a {form.code} must never carry a diagnosis (code system)")
            continue
        if form.no_diagnoses and felt.text and _DIAGNOSIS_IN_TEXT.search(felt.text):
            issues.fatal(where, f"a {form.code} must never carry a diagnosis (code in the text)")
            continue
        if not link_id:
            continue  # the shape already reported the missing id
        spec = form.field(link_id)
        if spec is None:
            issues.error(where, f"field id unknown to the {form.code} Questionnaire")
            continue
        if felt.attributes.get("type") != spec.kind:
            issues.error(where, f"field must have type {spec.kind}")
            continue
        if felt.text is None:
            continue  # an empty field is an unanswered one
        if spec.systems is not None:
            if system is None:
                issues.error(f"{where}/@system", "a coded field needs its code system")
                continue
            if system not in spec.systems:
                issues.error(f"{where}/@system", "code system not allowed for this field")
                continue
        value = _value(spec, felt.text, where, issues)
        if value is None:
            continue
        if found.get(link_id) and not spec.repeats:
            issues.error(where, "field may occur only once")
            continue
        found.setdefault(link_id, []).append(Answer(spec, value, system))
    for spec in form.fields:
        if spec.required and spec.link_id not in found:
            issues.error(f"{felter.path}/Felt[@id='{spec.link_id}']", "required field is missing")
    return tuple(answer for spec in form.fields for answer in found.get(spec.link_id, []))


def read_form(root: Node, issues: IssueCollector) -> FilledForm | None:
    """The model, or None when ``issues`` holds errors."""
    code, version = root.attributes.get("kode"), root.attributes.get("version")
    meta, felter = root.one("Meta"), root.one("Felter")
    form = FORMS.get(code or "")
    if code and form is None:
        issues.error(root.attribute_path("kode"), "form code without a Questionnaire")
    elif form is not None and version and version not in form.versions:
        issues.error(root.attribute_path("version"), "form version without a Questionnaire")
    if meta is None or felter is None or form is None or version is None:
        return None
    is_request = form.requests is not None
    afsender, modtager = meta.one("Afsender"), meta.one("Modtager")
    borger, laege = meta.one("Borger"), meta.one("Laege")
    if afsender is None or modtager is None or borger is None:
        return None
    sender = _party(afsender, "jobcentre" if is_request else "gp", issues)
    receiver_kind = "gp" if is_request else ("employer" if form.no_diagnoses else "jobcentre")
    receiver = _party(modtager, receiver_kind, issues)
    if not is_request:
        if sender.yder is None and afsender.text_of("Ydernummer") is None:
            issues.error(
                afsender.child_path("Ydernummer"), "the GP clinic's YDER number is required"
            )
        if laege is None:
            issues.error(meta.child_path("Laege"), "the signing doctor is required")
    elif not sender.identifiers() and not issues.has_errors:
        issues.error(afsender.path, "the requesting job centre needs an identifier")
    if is_request and not receiver.identifiers() and not issues.has_errors:
        issues.error(modtager.path, "the GP clinic asked needs an identifier")
    doctor = None
    if laege is not None:
        authorisation = read_checked(
            laege.text_of("Autorisation"),
            laege.child_path("Autorisation"),
            issues,
            is_valid_authorisation,
            AUTHORISATION_RULE,
        )
        doctor = Doctor(laege.text_of("Navn") or "", authorisation)
    form_id = read_id(meta.text_of("BlanketId"), meta.child_path("BlanketId"), issues)
    request_id = read_id(meta.text_of("AnmodningId"), meta.child_path("AnmodningId"), issues)
    issued = read_datetime(meta.text_of("Udstedt"), meta.child_path("Udstedt"), issues)
    cpr = read_checked(
        borger.text_of("CPR"), borger.child_path("CPR"), issues, is_valid_cpr, CPR_RULE
    )
    answers = _answers(form, felter, issues)
    citizen_name = borger.text_of("Navn")
    if issues.has_errors:
        return None
    assert form_id and issued and cpr and citizen_name  # noqa: S101 - the shape required them
    return FilledForm(
        form=form,
        version=version,
        form_id=form_id,
        request_id=request_id,
        issued=issued,
        sender=sender,
        doctor=doctor,
        receiver=receiver,
        cpr=cpr,
        citizen_name=citizen_name,
        answers=answers,
    )
