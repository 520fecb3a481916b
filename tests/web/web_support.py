"""Ole's story for the web tests: the hospital's plan, the job centre's case, his consent."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "formats" / "samples"
PLAN = SAMPLES / "rehab-plan" / "ggop-shoulder-electrician.xml"
CASE = SAMPLES / "jobcentre-case" / "sag-ole-aarhus.xml"
JOBCENTRE_ORG = "Organization/org-jobcenter-aarhus"
STAFF = {"jobcenter-aarhus": ("sagsbehandler", "demo-jobcenter-1")}


def consent(
    patient: str, labels: tuple[str, ...] = ("rehab-plan", "rehab-progress")
) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": patient},
        "dateTime": "2026-10-01T09:00:00+02:00",
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
            ]
        },
        "sourceAttachment": {"contentType": "application/pdf", "title": "Ole Kristensens samtykke"},
        "provision": {
            "type": "permit",
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "IRCP",
                            }
                        ]
                    },
                    "reference": {"reference": JOBCENTRE_ORG},
                }
            ],
            "purpose": [
                {
                    "system": "http://brobygger.dk/fhir/CodeSystem/purpose-of-use",
                    "code": "sickness-benefit-follow-up",
                }
            ],
            "securityLabel": [
                {"system": "http://brobygger.dk/fhir/CodeSystem/data-category", "code": label}
                for label in labels
            ],
        },
    }


def load_ole(base: str, hospital_token: str, jobcentre_token: str, client: httpx.Client) -> str:
    """The hospital's plan and the job centre's case of Ole; returns ``Patient/<id>``."""
    for token, path, kind in (
        (hospital_token, PLAN, "rehab-plan"),
        (jobcentre_token, CASE, "jobcentre-case"),
    ):
        response = client.post(
            f"{base}/ingest/{kind}",
            content=path.read_bytes(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/xml"},
        )
        assert response.status_code in (200, 201), response.text
    episode = next(
        e["resource"]
        for e in response.json()["entry"]
        if e.get("resource", {}).get("resourceType") == "EpisodeOfCare"
    )
    return str(episode["patient"]["reference"])


def refs_in(html: str) -> set[str]:
    return set(re.findall(r'data-ref="([A-Za-z]+/[A-Za-z0-9.\-]+)"', html))


def csrf_in(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match is not None, html[:500]
    return match.group(1)
