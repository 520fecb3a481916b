"""Consent enforcement cost: a patient-scoped search with the consent gate on vs. off.

    .venv/bin/python -m bench.consent_search                      # 10 000 patients, SQLite
    .venv/bin/python -m bench.consent_search --patients 200       # tiny mode
    .venv/bin/python -m bench.consent_search --database-url postgresql+psycopg://…/EMPTY_DB

Loads N patients, each with a hospital rehabilitation plan (addressed to the rehab unit), five
rehab-progress Observations, a mental-health Condition and a Consent for the job centre. Then
the same request, ``GET /fhir/Observation?patient=<id>`` as ``jobcenter-aarhus``, runs through
the whole ASGI app (in-process transport: no sockets, so only the gateway is measured) twice:
without consent enforcement, with it (decisions + AuditEvents committed before the answer,
the default) and with it and batched AuditEvents. It reports requests/second for each and
the ratios (the goal is under 1.3x). A fixed number of requests is
made in each mode; nothing runs unbounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from consent import ADDRESSEE_SYSTEM, DATA_CATEGORY_SYSTEM, PURPOSE_OF_USE_SYSTEM, stamp_author
from gateway.app import create_app
from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import private_key_path, read_private_key
from gateway.settings import Settings
from gateway.store.repository import Store

CPR = "urn:oid:1.2.208.176.1.2"
SKS_D = "urn:oid:1.2.208.176.2.4.12"


def _labels(*codes: str) -> list[dict[str, str]]:
    return [{"system": DATA_CATEGORY_SYSTEM, "code": c} for c in codes]


def patient_documents(number: int) -> list[dict[str, Any]]:
    pid = str(uuid.UUID(int=number + 1))
    subject = {"reference": f"Patient/{pid}"}
    hospital = "auh-ortopaedi"
    docs: list[dict[str, Any]] = [
        stamp_author(
            {
                "resourceType": "Patient",
                "id": pid,
                "identifier": [
                    {"system": CPR, "value": f"{(number % 28) + 1:02d}0180{number:04d}"}
                ],
            },
            hospital,
        ),
        stamp_author(
            {
                "resourceType": "ServiceRequest",
                "id": str(uuid.uuid4()),
                "meta": {
                    "security": _labels("rehab-plan"),
                    "tag": [{"system": ADDRESSEE_SYSTEM, "code": "aarhus-genoptraening"}],
                },
                "status": "active",
                "intent": "plan",
                "subject": subject,
                "authoredOn": "2026-10-01",
            },
            hospital,
        ),
        stamp_author(
            {
                "resourceType": "Condition",
                "id": str(uuid.uuid4()),
                "meta": {"security": _labels("rehab-plan", "mental-health")},
                "code": {"coding": [{"system": SKS_D, "code": "DF432"}]},
                "subject": subject,
                "recordedDate": "2026-10-01",
            },
            hospital,
        ),
    ]
    for week in range(5):
        docs.append(
            stamp_author(
                {
                    "resourceType": "Observation",
                    "id": str(uuid.uuid4()),
                    "meta": {"security": _labels("rehab-progress")},
                    "status": "final",
                    "code": {"text": "PSFS"},
                    "valueInteger": week,
                    "subject": subject,
                    "effectiveDateTime": f"2026-10-{week + 2:02d}",
                },
                "aarhus-genoptraening",
            )
        )
    docs.append(
        stamp_author(
            {
                "resourceType": "Consent",
                "id": str(uuid.uuid4()),
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
                "patient": subject,
                "dateTime": "2026-09-01T09:00:00+02:00",
                "policyRule": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                            "code": "OPTIN",
                        }
                    ]
                },
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
                            "reference": {"reference": "Organization/org-jobcenter-aarhus"},
                        }
                    ],
                    "purpose": [
                        {"system": PURPOSE_OF_USE_SYSTEM, "code": "sickness-benefit-follow-up"}
                    ],
                    "securityLabel": _labels("rehab-plan", "rehab-progress"),
                },
            },
            "jobcenter-aarhus",
        )
    )
    return docs


async def load(store: Store, patients: int, batch: int) -> float:
    started = time.perf_counter()
    with Progress() as progress:
        task = progress.add_task("loading patients", total=patients)
        for first in range(0, patients, batch):
            async with store.write("bench-load") as writer:
                for number in range(first, min(first + batch, patients)):
                    for resource in patient_documents(number):
                        await writer.put(resource)
            progress.update(task, advance=min(batch, patients - first))
    return time.perf_counter() - started


async def measure(
    settings: Settings, patients: int, requests: int, seed: int, concurrency: int
) -> dict[str, Any]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            key = read_private_key(private_key_path(settings.keys_dir, "jobcenter-aarhus"))
            token_response = await client.post(
                "/auth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": CLIENT_ASSERTION_TYPE,
                    "client_assertion": make_client_assertion(
                        key, "jobcenter-aarhus", settings.token_url
                    ),
                    "scope": "system/*.read",
                    "purpose": "sickness-benefit-follow-up",
                },
            )
            token_response.raise_for_status()
            headers = {"Authorization": f"Bearer {token_response.json()['access_token']}"}
            rng = random.Random(seed)
            picks = [rng.randrange(patients) for _ in range(requests)]
            # Warm-up (connection pool, caches) outside the measurement.
            for number in picks[:20]:
                await client.get(
                    "/fhir/Observation",
                    params={"patient": str(uuid.UUID(int=number + 1))},
                    headers=headers,
                )

            async def caller(numbers: list[int]) -> None:
                for number in numbers:
                    response = await client.get(
                        "/fhir/Observation",
                        params={"patient": str(uuid.UUID(int=number + 1))},
                        headers=headers,
                    )
                    if response.status_code != 200:
                        raise RuntimeError(f"search failed: {response.status_code}")
                    if response.json().get("total") != 5:
                        raise RuntimeError("wrong number of matches")

            started = time.perf_counter()
            await asyncio.gather(*[caller(picks[i::concurrency]) for i in range(concurrency)])
            elapsed = time.perf_counter() - started
    return {"requests": requests, "seconds": elapsed, "per_second": requests / elapsed}


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="brobygger-consent-bench-"))
    url = args.database_url or f"sqlite+aiosqlite:///{work}/bench.db"
    base = Settings(
        environment="test",
        database_url=url,
        base_url="http://bench",
        keys_dir=work / "keys",
        demo=True,
    )

    async def prepare() -> float:
        app = create_app(base)
        async with app.router.lifespan_context(app):
            store: Store = app.state.store
            existing = await store.search(store.parse("Observation", [("_summary", "count")]))
            if existing.total:
                raise SystemExit("the database must be empty (the bench never deletes)")
            return await load(store, args.patients, args.batch)

    load_seconds = asyncio.run(prepare())
    off = asyncio.run(
        measure(
            base.model_copy(update={"enforce_consent": False}),
            args.patients,
            args.requests,
            args.seed,
            args.concurrency,
        )
    )
    on = asyncio.run(measure(base, args.patients, args.requests, args.seed, args.concurrency))
    batched = asyncio.run(
        measure(
            base.model_copy(update={"audit_write": "batched"}),
            args.patients,
            args.requests,
            args.seed,
            args.concurrency,
        )
    )
    return {
        "database": url.split("://")[0],
        "patients": args.patients,
        "resources_loaded": args.patients * 9,
        "load_seconds": round(load_seconds, 2),
        "search_without_enforcement_per_second": round(off["per_second"], 1),
        "search_with_enforcement_per_second": round(on["per_second"], 1),
        "slowdown_ratio": round(off["per_second"] / on["per_second"], 3),
        "search_with_enforcement_batched_audit_per_second": round(batched["per_second"], 1),
        "slowdown_ratio_batched_audit": round(off["per_second"] / batched["per_second"], 3),
        "requests_per_mode": args.requests,
        "concurrency": args.concurrency,
    }


def show(report: dict[str, Any]) -> None:
    table = Table(title="Patient-scoped search as the job centre (Observation?patient=…)")
    table.add_column("mode")
    table.add_column("requests/s", justify="right")
    table.add_row("consent enforcement off", str(report["search_without_enforcement_per_second"]))
    table.add_row(
        "enforcement on, audit written before answering (default)",
        str(report["search_with_enforcement_per_second"]),
    )
    table.add_row(
        "enforcement on, audit batched (BROBYGGER_AUDIT_WRITE=batched)",
        str(report["search_with_enforcement_batched_audit_per_second"]),
    )
    table.add_row("slowdown, default audit", f"{report['slowdown_ratio']}x")
    table.add_row("slowdown, batched audit", f"{report['slowdown_ratio_batched_audit']}x")
    Console().print(table)
    Console().print(
        f"{report['patients']} patients, {report['resources_loaded']} resources "
        f"loaded in {report['load_seconds']} s on {report['database']}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent callers")
    parser.add_argument("--database-url", help="an EMPTY database (default: SQLite in a temp dir)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = run(args)
    show(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
