"""Everything the gateway sends, checked by an independent R4 validator (Medplum + FHIR.js).

One of every kind of resource the server returns is collected from a live gateway over HTTP
with a real token: the CapabilityStatement, searchset / history / transaction-response /
batch-response Bundles, an OperationOutcome per error class, and a minimal instance of every
supported resource type as read back. The bytes on the wire are written to files and
validated in one run of ``fhir-validate`` (Node start-up is slow).

Consent enforcement is on, as in production: the hospital reads what it wrote, the job centre
records the Consent, and AuditEvents (the gateway's alone) are read by the citizen portal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from live.harness import LiveGateway

from profiles.fhir_release import SUPPORTED_TYPES

FHIR_JSON = "application/fhir+json"
CPR = "urn:oid:1.2.208.176.1.2"
SOR = "urn:oid:1.2.208.176.1.1"
LOINC = "http://loinc.org"
QUESTIONNAIRE_URL = "http://brobygger.example/fhir/Questionnaire/arbejdsevne"
RECORDED = "2024-03-01T10:15:00+01:00"
JOBCENTRE = "jobcenter-aarhus"
JOBCENTRE_PURPOSE = "sickness-benefit-follow-up"
PURPOSE_SYSTEM = "http://brobygger.dk/fhir/CodeSystem/purpose-of-use"

pytestmark = pytest.mark.slow


def _ref(rtype: str, rid: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{rid}"}


def minimal_examples(patient: str, organization: str, practitioner: str) -> dict[str, Any]:
    """A small valid R4 instance of each type (keys: resourceType), given base resources."""
    subject = _ref("Patient", patient)
    org = _ref("Organization", organization)
    weight = {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]}
    examples: list[dict[str, Any]] = [
        {
            "resourceType": "PractitionerRole",
            "active": True,
            "practitioner": _ref("Practitioner", practitioner),
            "organization": org,
        },
        {
            "resourceType": "Condition",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {"text": "knæskade"},
            "subject": subject,
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "code": weight,
            "subject": subject,
            "effectiveDateTime": "2024-02-01",
            "valueQuantity": {
                "value": 81.5,
                "unit": "kg",
                "system": "http://unitsofmeasure.org",
                "code": "kg",
            },
        },
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "code": {"text": "genoptræning"},
            "subject": subject,
        },
        {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "for": subject,
            "owner": org,
        },
        {
            "resourceType": "Questionnaire",
            "url": QUESTIONNAIRE_URL,
            "name": "Arbejdsevne",
            "status": "active",
            "item": [{"linkId": "1", "text": "Kan du arbejde?", "type": "boolean"}],
        },
        {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": QUESTIONNAIRE_URL,
            "status": "completed",
            "subject": subject,
            "item": [{"linkId": "1", "answer": [{"valueBoolean": True}]}],
        },
        {
            "resourceType": "EpisodeOfCare",
            "status": "active",
            "patient": subject,
            "managingOrganization": org,
        },
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB",
            },
            "subject": subject,
            "period": {"start": "2024-02-01T09:00:00+01:00", "end": "2024-02-01T09:30:00+01:00"},
        },
        {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": subject},
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": subject,
            "content": [{"attachment": {"contentType": "text/plain", "data": "SGVq"}}],
        },
        {
            "resourceType": "Provenance",
            "target": [subject],
            "recorded": RECORDED,
            "agent": [{"who": org}],
        },
        {
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
            "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
            "patient": subject,
            "dateTime": RECORDED,
            "sourceAttachment": {"contentType": "application/pdf", "title": "samtykke"},
            "policyRule": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
                ]
            },
            "provision": {
                "type": "permit",
                "actor": [
                    {
                        "role": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "v3-ParticipationType",
                                    "code": "IRCP",
                                }
                            ]
                        },
                        "reference": {"reference": f"Organization/org-{JOBCENTRE}"},
                    }
                ],
                "purpose": [{"system": PURPOSE_SYSTEM, "code": JOBCENTRE_PURPOSE}],
            },
        },
        {
            "resourceType": "Communication",
            "status": "completed",
            "subject": subject,
            "payload": [{"contentString": "Hej"}],
        },
        {
            "resourceType": "Appointment",
            "status": "booked",
            "start": "2024-04-02T10:00:00+02:00",
            "end": "2024-04-02T10:30:00+02:00",
            "participant": [{"actor": subject, "status": "accepted"}],
        },
        {"resourceType": "Binary", "contentType": "text/plain", "data": "SGVq"},
        {
            "resourceType": "RiskAssessment",
            "status": "preliminary",
            "subject": subject,
            "occurrenceDateTime": "2024-04-02",
            "mitigation": "Et signal, ikke en afgørelse",
        },
        # The shared plan's parts (docs/shared-plan.md; tests/deadlines/test_shared_plan.py
        # validates them as the plan writes them).
        {"resourceType": "CareTeam", "status": "active", "subject": subject},
        {
            "resourceType": "Goal",
            "lifecycleStatus": "active",
            "description": {"text": "Tilbage på arbejde"},
            "subject": subject,
        },
    ]
    return {e["resourceType"]: e for e in examples}


# Valid R4, but the API refuses it: AuditEvents are written by the gateway only.
AUDIT_EVENT = {
    "resourceType": "AuditEvent",
    "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
    "action": "R",
    "recorded": RECORDED,
    "outcome": "0",
    "agent": [{"who": {"reference": "Organization/org-auh-ortopaedi"}, "requestor": True}],
    "source": {"observer": {"reference": "Organization/org-auh-ortopaedi"}},
}

BASE_EXAMPLES: dict[str, dict[str, Any]] = {
    "Organization": {
        "resourceType": "Organization",
        "identifier": [{"system": SOR, "value": "123451000016009"}],
        "name": "Testklinikken",
    },
    "Patient": {
        "resourceType": "Patient",
        "identifier": [{"system": CPR, "value": "0101801234"}],
        "name": [{"family": "Hansen", "given": ["Ole"]}],
        "gender": "male",
        "birthDate": "1980-01-01",
    },
    "Practitioner": {"resourceType": "Practitioner", "name": [{"family": "Jensen"}]},
}


class Collector:
    """Makes requests and keeps each response body, byte for byte, as ``<name>.json``."""

    def __init__(self, gateway: LiveGateway, token: str, out: Path) -> None:
        self.out = out
        self.files: dict[str, Path] = {}
        self.http = httpx.Client(
            base_url=gateway.fhir_base + "/",
            headers={"Authorization": f"Bearer {token}", "Accept": FHIR_JSON},
            timeout=30,
        )

    def keep(self, name: str, response: httpx.Response, status: int) -> Any:
        assert response.status_code == status, f"{name}: {response.status_code} {response.text}"
        assert response.headers["content-type"].startswith(FHIR_JSON), name
        assert name not in self.files, name
        path = self.out / f"{name}.json"
        path.write_bytes(response.content)
        self.files[name] = path
        return response.json()

    def create(self, resource: dict[str, Any], token: str | None = None) -> str:
        headers = {"Content-Type": FHIR_JSON, **_bearer(token)}
        response = self.http.post(resource["resourceType"], json=resource, headers=headers)
        assert response.status_code == 201, response.text
        rid: str = response.json()["id"]
        return rid

    def outcome(self, name: str, response: httpx.Response, status: int) -> None:
        body = self.keep(f"outcome-{status}-{name}", response, status)
        assert body["resourceType"] == "OperationOutcome", body


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture
def collector(live_gateway: LiveGateway, tmp_path: Path) -> Iterator[Collector]:
    out = tmp_path / "server-output"
    out.mkdir()
    collector = Collector(live_gateway, live_gateway.token(), out)
    try:
        yield collector
    finally:
        collector.http.close()


def _collect_resources(c: Collector, gateway: LiveGateway) -> dict[str, str]:
    ids = {rtype: c.create(resource) for rtype, resource in BASE_EXAMPLES.items()}
    examples = minimal_examples(ids["Patient"], ids["Organization"], ids["Practitioner"])
    missing = set(SUPPORTED_TYPES) - {"AuditEvent"} - set(BASE_EXAMPLES) - set(examples)
    assert not missing, f"add a minimal example for the newly supported types {sorted(missing)}"
    readers: dict[str, str | None] = {}
    # Only municipal departments (and the portal) record consents; the hospital writes the rest.
    jobcentre = gateway.token(JOBCENTRE, purpose=JOBCENTRE_PURPOSE)
    # A job centre records a consent only for a citizen it holds a record of: its own case.
    c.create(examples["EpisodeOfCare"], token=jobcentre)
    for rtype in SUPPORTED_TYPES:
        if rtype not in ids and rtype != "AuditEvent":
            readers[rtype] = jobcentre if rtype == "Consent" else None
            ids[rtype] = c.create(examples[rtype], token=readers[rtype])
    for rtype in SUPPORTED_TYPES:
        if rtype == "AuditEvent":
            continue
        response = c.http.get(f"{rtype}/{ids[rtype]}", headers=_bearer(readers.get(rtype)))
        body = c.keep(f"resource-{rtype}", response, 200)
        assert body["resourceType"] == rtype and body["id"] == ids[rtype]
        assert body["meta"]["versionId"] == "1"

    # The reads above were audited; the citizen portal reads its citizen's audit trail.
    portal = gateway.token(
        "borger-portal",
        scope="patient/*.read",
        purpose="citizen-access",
        patient=f"Patient/{ids['Patient']}",
    )
    trail = c.keep(
        "bundle-searchset-audit-trail",
        c.http.get(
            "AuditEvent",
            params={"patient": ids["Patient"], "_sort": "-date"},
            headers=_bearer(portal),
        ),
        200,
    )
    assert trail["total"] >= 1, trail
    ids["AuditEvent"] = trail["entry"][0]["resource"]["id"]
    event = c.keep(
        "resource-AuditEvent",
        c.http.get(f"AuditEvent/{ids['AuditEvent']}", headers=_bearer(portal)),
        200,
    )
    assert event["resourceType"] == "AuditEvent"
    return ids


def _collect_bundles(c: Collector, ids: dict[str, str]) -> None:
    patient = ids["Patient"]
    second = {**minimal_examples(patient, "x", "y")["Observation"], "effectiveDateTime": "2024-03"}
    c.create(second)
    searchset = c.keep(
        "bundle-searchset",
        c.http.get(
            "Observation",
            params=[
                ("subject", f"Patient/{patient}"),
                ("_include", "Observation:subject"),
                ("_count", "1"),
                ("_sort", "date"),
                ("no-such-parameter", "1"),
            ],
            headers={"Prefer": "handling=lenient"},
        ),
        200,
    )
    assert searchset["type"] == "searchset" and searchset["total"] == 2
    assert {link["relation"] for link in searchset["link"]} >= {"self", "first", "next", "last"}
    modes = sorted(e["search"]["mode"] for e in searchset["entry"])
    assert modes == ["include", "match", "outcome"], modes
    page_two = c.keep("bundle-searchset-page-2", c.http.get(_next(searchset)), 200)
    assert next(e["search"]["mode"] for e in page_two["entry"]) == "match"
    c.keep("bundle-searchset-empty", c.http.get("Patient", params={"family": "ingen"}), 200)
    count = c.keep(
        "bundle-searchset-count", c.http.get("Patient", params={"_summary": "count"}), 200
    )
    assert count["total"] >= 1 and "entry" not in count
    revinclude = c.keep(
        "bundle-searchset-revinclude",
        c.http.get("Patient", params={"_id": patient, "_revinclude": "Observation:subject"}),
        200,
    )
    assert len(revinclude["entry"]) == 3

    # A history with a create, an update and a deletion (no resource in that entry).
    doomed = c.create({**BASE_EXAMPLES["Patient"], "identifier": [{"system": CPR, "value": "2"}]})
    updated = c.http.put(
        f"Patient/{doomed}",
        json={
            **BASE_EXAMPLES["Patient"],
            "id": doomed,
            "identifier": [{"system": CPR, "value": "2"}],
            "gender": "female",
        },
        headers={"Content-Type": FHIR_JSON, "If-Match": 'W/"1"'},
    )
    c.keep("resource-Patient-updated", updated, 200)
    assert c.http.delete(f"Patient/{doomed}").status_code == 204
    history = c.keep("bundle-history-instance", c.http.get(f"Patient/{doomed}/_history"), 200)
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "PUT", "POST"]
    c.keep("bundle-history-type", c.http.get("Patient/_history", params={"_count": "2"}), 200)
    c.keep("bundle-history-system", c.http.get("_history", params={"_count": "3"}), 200)
    c.keep("resource-Patient-vread", c.http.get(f"Patient/{doomed}/_history/1"), 200)
    c.outcome("deleted", c.http.get(f"Patient/{doomed}"), 410)
    c.outcome("deleted-version", c.http.get(f"Patient/{doomed}/_history/3"), 410)

    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:9b1e4d7e-3f5c-4a11-9c39-0f1d2a3b4c5d",
                "resource": {
                    **BASE_EXAMPLES["Patient"],
                    "identifier": [{"system": CPR, "value": "3"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    **second,
                    "subject": {"reference": "urn:uuid:9b1e4d7e-3f5c-4a11-9c39-0f1d2a3b4c5d"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {"request": {"method": "GET", "url": f"Patient/{patient}"}},
        ],
    }
    response = c.keep("bundle-transaction-response", _post_bundle(c, transaction), 200)
    assert response["type"] == "transaction-response" and len(response["entry"]) == 3
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {
                    **BASE_EXAMPLES["Patient"],
                    "identifier": [{"system": CPR, "value": "4"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "GET", "url": "Patient/no-such-patient"}},
            {"request": {"method": "GET", "url": f"Patient/{doomed}"}},
        ],
    }
    response = c.keep("bundle-batch-response", _post_bundle(c, batch), 200)
    statuses = [e["response"]["status"].split()[0] for e in response["entry"]]
    assert statuses == ["201", "404", "410"], statuses


def _next(bundle: dict[str, Any]) -> str:
    url: str = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    return url


def _post_bundle(c: Collector, bundle: dict[str, Any]) -> httpx.Response:
    return c.http.post("", json=bundle, headers={"Content-Type": FHIR_JSON})


def _collect_errors(c: Collector, gateway: LiveGateway, ids: dict[str, str]) -> None:
    patient = ids["Patient"]
    json_header = {"Content-Type": FHIR_JSON}
    c.outcome("no-token", httpx.get(f"{gateway.fhir_base}/Patient"), 401)
    c.outcome(
        "bad-token",
        httpx.get(f"{gateway.fhir_base}/Patient", headers={"Authorization": "Bearer x.y.z"}),
        401,
    )
    reader = {"Authorization": f"Bearer {gateway.token(scope='system/*.read')}"}
    c.outcome(
        "no-write-scope",
        c.http.post("Patient", json=BASE_EXAMPLES["Patient"], headers={**reader, **json_header}),
        403,
    )
    c.outcome("unknown-type", c.http.get("Foo"), 404)
    c.outcome("unknown-id", c.http.get("Patient/no-such-patient"), 404)
    c.outcome("unknown-endpoint", c.http.get(f"{gateway.base_url}/no/such/endpoint"), 404)
    c.outcome("unknown-parameter", c.http.get("Patient", params={"no-such-parameter": "1"}), 400)
    c.outcome("bad-date", c.http.get("Patient", params={"birthdate": "last-tuesday"}), 400)
    c.outcome("bad-count", c.http.get("Patient", params={"_count": "-1"}), 400)
    c.outcome("bad-json", c.http.post("Patient", content=b"{not json", headers=json_header), 400)
    invalid = {"resourceType": "Patient", "gender": 7, "nickname": "Olle"}
    c.outcome("invalid-resource", c.http.post("Patient", json=invalid, headers=json_header), 400)
    c.outcome(
        "wrong-type",
        c.http.post("Patient", json=BASE_EXAMPLES["Practitioner"], headers=json_header),
        400,
    )
    current = c.http.get(f"Patient/{patient}").json()
    c.outcome(
        "if-match",
        c.http.put(
            f"Patient/{patient}",
            json=current,
            headers={**json_header, "If-Match": 'W/"99"'},
        ),
        412,
    )
    c.outcome(
        "media-type",
        c.http.post("Patient", content=b"<Patient/>", headers={"Content-Type": "text/xml"}),
        415,
    )
    c.outcome("method", c.http.patch(f"Patient/{patient}", json={}), 405)
    bad_batch = {"resourceType": "Bundle", "type": "collection"}
    c.outcome("bundle-type", _post_bundle(c, bad_batch), 400)

    # The consent and audit rules' own refusals.
    c.outcome(
        "audit-append-only", c.http.post("AuditEvent", json=AUDIT_EVENT, headers=json_header), 405
    )
    consent = minimal_examples(patient, "x", "y")["Consent"]
    c.outcome("consent-recorder", c.http.post("Consent", json=consent, headers=json_header), 403)
    jobcentre = _bearer(gateway.token(JOBCENTRE, purpose=JOBCENTRE_PURPOSE))
    unsigned = {k: v for k, v in consent.items() if k not in ("sourceAttachment", "dateTime")}
    c.outcome(
        "consent-profile",
        c.http.post("Consent", json=unsigned, headers={**json_header, **jobcentre}),
        422,
    )
    stranger = c.create({**BASE_EXAMPLES["Patient"], "identifier": [{"system": CPR, "value": "5"}]})
    hidden = c.create({**minimal_examples(stranger, "x", "y")["Observation"]})
    c.outcome("hidden-by-consent", c.http.get(f"Observation/{hidden}", headers=jobcentre), 404)


def test_everything_the_server_returns_is_valid_r4(
    live_gateway: LiveGateway,
    collector: Collector,
    fhir_validate: Callable[[list[Path]], Any],
) -> None:
    c = collector
    capability = c.keep(
        "capability-statement", httpx.get(f"{live_gateway.fhir_base}/metadata"), 200
    )
    assert capability["resourceType"] == "CapabilityStatement"
    ids = _collect_resources(c, live_gateway)
    _collect_bundles(c, ids)
    _collect_errors(c, live_gateway, ids)

    kinds = {json.loads(p.read_bytes())["resourceType"] for p in c.files.values()}
    assert kinds >= {"CapabilityStatement", "Bundle", "OperationOutcome", *SUPPORTED_TYPES}
    result = fhir_validate(sorted(c.files.values()))
    assert result.returncode == 0, (
        f"fhir-validate found problems in what the gateway sends:\n{result.output}"
    )
    assert result.output.count("VALID   ") == len(c.files), result.output


def test_the_validator_rejects_what_it_should(
    tmp_path: Path, fhir_validate: Callable[[list[Path]], Any]
) -> None:
    """A control: the validator is not a rubber stamp (so exit 0 above means something)."""
    bad = {
        "unknown-element.json": {"resourceType": "Patient", "nickname": "Olle"},
        "bad-code.json": {"resourceType": "Patient", "gender": "x"},
        "missing-required.json": {"resourceType": "OperationOutcome"},
        "bundle-invariant.json": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"request": {"method": "GET", "url": "Patient"}}],
        },
    }
    files = []
    for name, content in bad.items():
        files.append(tmp_path / name)
        files[-1].write_text(json.dumps(content), encoding="utf-8")
    result = fhir_validate(files)
    assert result.returncode == 1, result.output
    assert result.output.count("INVALID ") == len(bad), result.output


# Invalid R4 a client might send: each must be refused, or else be valid as served back.
INVALID_INPUTS: dict[str, dict[str, Any]] = {
    "obs-6-value-and-data-absent-reason": {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "vægt"},
        "valueString": "81",
        "dataAbsentReason": {"text": "ikke målt"},
    },
    "app-3-booked-without-start": {
        "resourceType": "Appointment",
        "status": "booked",
        "participant": [{"actor": {"reference": "Patient/x"}, "status": "accepted"}],
    },
    "pat-1-contact-without-details": {"resourceType": "Patient", "contact": [{"gender": "male"}]},
    "per-1-period-ends-before-start": {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "period": {"start": "2024-02-02", "end": "2024-02-01"},
    },
    "required-binding-gender-x": {"resourceType": "Patient", "gender": "x"},
    "empty-array-name": {"resourceType": "Patient", "name": []},
}


def test_what_the_server_accepts_is_valid_r4(
    live_gateway: LiveGateway,
    collector: Collector,
    fhir_validate: Callable[[list[Path]], Any],
) -> None:
    c = collector
    cases = {name: (resource, None) for name, resource in INVALID_INPUTS.items()}
    # docs/consent.md's walk-through Consent (no policy or policyRule: R4 invariant ppc-1).
    patient = c.create(BASE_EXAMPLES["Patient"])
    documented = minimal_examples(patient, "x", "y")["Consent"]
    del documented["policyRule"]
    jobcentre = live_gateway.token(JOBCENTRE, purpose=JOBCENTRE_PURPOSE)
    cases["ppc-1-consent-as-in-docs-consent-md"] = (documented, jobcentre)

    accepted = []
    for name, (resource, token) in cases.items():
        headers = {"Content-Type": FHIR_JSON, **_bearer(token)}
        response = c.http.post(resource["resourceType"], json=resource, headers=headers)
        if response.status_code == 201:
            accepted.append(name)
            rid = response.json()["id"]
            read = c.http.get(f"{resource['resourceType']}/{rid}", headers=_bearer(token))
            c.keep(f"accepted-{name}", read, 200)
        else:
            assert 400 <= response.status_code < 500, response.text
            c.keep(f"refused-{name}", response, response.status_code)
    result = fhir_validate(sorted(c.files.values()))
    assert result.returncode == 0, (
        f"the gateway accepted {', '.join(accepted)}; the validator finds these invalid "
        f"as the gateway serves them back:\n{result.output}"
    )
