"""The CapabilityStatement: exactly what this server supports, built from the registry."""

from __future__ import annotations

from typing import Any

from gateway.search.parameters import COMMON, SEARCH_PARAMS
from gateway.settings import Settings
from profiles.fhir_release import FHIR_VERSION, SUPPORTED_TYPES

_INTERACTIONS = [
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]
_COMMON_NAMES = {p.name for p in COMMON}


# The audit trail is append-only and written by the gateway alone (gateway/api/audit.py).
_AUDIT_EVENT: dict[str, Any] = {
    "type": "AuditEvent",
    "documentation": "The citizen's audit trail: readable by the citizen portal only",
    "interaction": [{"code": "read"}, {"code": "vread"}, {"code": "search-type"}],
    "versioning": "no-version",
    "readHistory": False,
    "updateCreate": False,
    "conditionalCreate": False,
    "conditionalRead": "not-supported",
    "conditionalUpdate": False,
    "conditionalDelete": "not-supported",
    "searchParam": [
        {"name": "patient", "type": "reference"},
        {"name": "date", "type": "date"},
        {"name": "outcome", "type": "token"},
    ],
}

# The managers' key figures (gateway/figures): definitions read-only, evaluated on demand.
_MEASURE: dict[str, Any] = {
    "type": "Measure",
    "documentation": "Managers' key figures: summary MeasureReports, small cells suppressed",
    "interaction": [{"code": "read"}, {"code": "search-type"}],
    "operation": [
        {
            "name": "evaluate-measure",
            "definition": "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure",
        }
    ],
}


def _includes(rtype: str) -> list[str]:
    return sorted(
        f"{rtype}:{p.name}" for p in SEARCH_PARAMS[rtype].values() if p.kind == "reference"
    )


def _revincludes(rtype: str) -> list[str]:
    out: list[str] = []
    for source, params in SEARCH_PARAMS.items():
        for p in params.values():
            if source == "AuditEvent":
                continue
            if p.kind == "reference" and (not p.targets or rtype in p.targets):
                out.append(f"{source}:{p.name}")
    return sorted(out)


def capability_statement(settings: Settings, software_version: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for rtype in SUPPORTED_TYPES:
        if rtype == "AuditEvent":
            resources.append(_AUDIT_EVENT)
            continue
        params = [
            {"name": p.name, "type": "uri" if p.kind == "uri" else p.kind}
            | ({"definition": p.definition} if p.definition else {})
            for p in SEARCH_PARAMS[rtype].values()
            if p.name not in _COMMON_NAMES
        ]
        resources.append(
            {
                "type": rtype,
                "interaction": [{"code": code} for code in _INTERACTIONS],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalRead": "not-supported",
                "conditionalUpdate": False,
                "conditionalDelete": "not-supported",
                "searchInclude": _includes(rtype),
                "searchRevInclude": _revincludes(rtype),
                "searchParam": params,
            }
        )
    if "Measure" not in SUPPORTED_TYPES:
        resources.append(_MEASURE)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "Brobygger",
        "kind": "instance",
        "software": {"name": "Brobygger", "version": software_version},
        "implementation": {
            "description": "Brobygger health-employment FHIR gateway",
            "url": settings.fhir_base,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "extension": [
                        {
                            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                            "extension": [{"url": "token", "valueUri": settings.token_url}],
                        }
                    ],
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": "SMART Backend Services (client_credentials, private_key_jwt)",
                },
                "resource": resources,
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
                "operation": [
                    {
                        "name": "validate",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                    }
                ],
                "searchParam": [
                    {"name": "_id", "type": "token"},
                    {"name": "_lastUpdated", "type": "date"},
                    {"name": "_tag", "type": "token"},
                    {"name": "_security", "type": "token"},
                    {"name": "_profile", "type": "uri"},
                    {"name": "_has", "type": "string"},
                ],
            }
        ],
    }
