"""Validate a resource or Bundle: base R4 first, then our profiles, codes, extensions, forms.

Which profiles apply: the one asked for, else those in ``meta.profile`` that we know (an
unknown one is a warning); in a Bundle each entry's resource by its own ``meta.profile``. A
QuestionnaireResponse answering one of our Questionnaires is checked against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from profiles._base_r4 import validate_base
from profiles._questionnaire import validate_questionnaire_response
from profiles._registry import QUESTIONNAIRE_BASE, registry
from profiles._report import ValidationIssue, ValidationReport
from profiles._rules import Profile, check_profile, profiles
from profiles._terminology import check_codes_and_extensions

# Relative ``Bundle.entry.fullUrl`` breaks R4 ("SHALL be absolute"), but MedCom's published
# messages use them and MedCom systems send them: on the messaging channel it is a warning.
_RELATIVE_FULL_URL = "fullUrl must be an absolute URL"

Channel = Literal["validate", "rest", "ingest", "messaging"]


def _base_issues(resource: Any, channel: Channel) -> list[ValidationIssue]:
    found = validate_base(resource)
    if channel == "messaging":
        found = [
            ValidationIssue("warning", i.code, i.expression, i.text, i.key)
            if i.text.startswith(_RELATIVE_FULL_URL)
            else i
            for i in found
        ]
    return found


def _declared(resource: Mapping[str, Any]) -> list[str]:
    meta = resource.get("meta")
    declared = meta.get("profile") if isinstance(meta, Mapping) else None
    return [p for p in declared if isinstance(p, str)] if isinstance(declared, list) else []


def _check_resource(
    resource: Mapping[str, Any],
    requested: list[str],
    issues: list[ValidationIssue],
    *,
    explicit: bool = False,
) -> list[str]:
    """Profiles and form checks for one resource; returns the canonicals applied."""
    resource_type = resource["resourceType"]
    known = profiles()
    applied: list[str] = []
    for canonical in requested:
        profile: Profile | None = known.get(canonical)
        if profile is None:
            # Asked for by name it must exist; merely declared, it is someone else's profile.
            issues.append(
                ValidationIssue(
                    "error" if explicit else "warning",
                    "not-supported",
                    resource_type if explicit else f"{resource_type}.meta.profile",
                    f"profile {canonical} is not known here; not checked",
                )
            )
            continue
        if profile.type != resource_type:
            issues.append(
                ValidationIssue(
                    "error",
                    "invalid",
                    resource_type,
                    f"profile {profile.canonical} constrains {profile.type}",
                )
            )
            continue
        applied.append(profile.canonical)
        issues.extend(check_profile(profile, resource))
    if resource_type == "QuestionnaireResponse":
        issues.extend(_check_form(resource))
    return applied


def _check_form(response: Mapping[str, Any]) -> list[ValidationIssue]:
    canonical = response.get("questionnaire")
    if not isinstance(canonical, str) or not canonical.startswith(QUESTIONNAIRE_BASE):
        return []
    questionnaire = registry().find(canonical, "Questionnaire")
    if questionnaire is None:
        return [
            ValidationIssue(
                "error",
                "not-found",
                "QuestionnaireResponse.questionnaire",
                f"no Questionnaire {canonical} (form or version unknown)",
            )
        ]
    return list(validate_questionnaire_response(response, questionnaire).issues)


def validate(
    resource: Any, *, profile: str | None = None, channel: Channel = "validate"
) -> ValidationReport:
    """Check ``resource`` against base R4 (HL7's definitions) and the profiles that apply.

    Base R4 comes first: if it finds errors, its issues are the report. ``profile`` (a
    canonical, optionally ``|version``) replaces ``meta.profile`` for the resource itself;
    Bundle entries are always checked against their own ``meta.profile``. A claimed profile we
    do not know is a warning ("not checked") and is never listed as applied.
    """
    base = _base_issues(resource, channel)
    if any(i.severity in ("error", "fatal") for i in base) or not isinstance(resource, Mapping):
        return ValidationReport(tuple(base))
    issues: list[ValidationIssue] = list(base)
    resource_type = resource["resourceType"]
    requested = [profile] if profile is not None else _declared(resource)
    applied = _check_resource(resource, requested, issues, explicit=profile is not None)
    if resource_type == "Bundle":
        for index, entry in enumerate(resource.get("entry", [])):
            inner = entry.get("resource") if isinstance(entry, Mapping) else None
            if not isinstance(inner, Mapping):
                continue
            found: list[ValidationIssue] = []
            applied.extend(_check_resource(inner, _declared(inner), found))
            prefix = f"Bundle.entry[{index}].resource"
            issues.extend(i.rebased(inner["resourceType"], prefix) for i in found)
    issues.extend(check_codes_and_extensions(resource, resource_type))
    return ValidationReport(tuple(issues), tuple(dict.fromkeys(applied)))


def validate_incoming(resource: Any, *, channel: Channel) -> ValidationReport:
    """The one check every write path runs (REST, ingest, messaging).

    Base R4 plus every profile the resource (and each Bundle entry) claims in
    ``meta.profile`` that we know; an unknown claimed profile (MedCom's, say) is a warning
    "not checked", never reported as met.
    """
    return validate(resource, channel=channel)
