"""Which of Brobygger's profiles each produced resource claims (``meta.profile``).

The profiles themselves are in ``profiles/definitions`` (version 0.1.0); declaring them makes
the validator check each resource against its profile's rules on the way into the store.
"""

from __future__ import annotations

from typing import Any

from mappings._codes import BROBYGGER_BASE

PROFILE_VERSION = "0.1.0"
_BY_TYPE = {
    "EpisodeOfCare": "sickness-benefit-case",
    "CarePlan": "gradual-return-plan",
    "Task": "deadline-task",
    "QuestionnaireResponse": "medical-statement-response",
}


def profile_of(resource: dict[str, Any]) -> str | None:
    kind = resource.get("resourceType")
    name: str | None
    if kind == "ServiceRequest":
        name = "rehab-plan" if resource.get("intent") == "plan" else "statement-request"
    elif kind == "Observation":
        labels = {s.get("code") for s in resource.get("meta", {}).get("security", [])}
        name = "employment-relevant-observation" if "employment-relevant" in labels else None
    else:
        name = _BY_TYPE.get(str(kind))
    return f"{BROBYGGER_BASE}/StructureDefinition/{name}|{PROFILE_VERSION}" if name else None


def declare_profiles(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle with ``meta.profile`` set on every resource that meets one of our profiles."""
    entries = []
    for entry in bundle.get("entry", []):
        resource = entry.get("resource")
        profile = profile_of(resource) if isinstance(resource, dict) else None
        if profile is not None:
            meta = dict(resource.get("meta") or {})
            meta["profile"] = [profile]
            entry = {**entry, "resource": {**resource, "meta": meta}}
        entries.append(entry)
    return {**bundle, "entry": entries}
