"""MedCom's published example messages, re-addressed to the demo participants.

The examples (``../shared/formats/medcom-examples/``, from MedCom's public TestScripts) name
MedCom's test organisations; a Danish system sends the same messages with its own SOR/EAN and
its receiver's. ``readdress`` does that: sender and receiver Organizations carry the demo
participants' identifiers, the MessageHeader a fresh id (the Provenance that targets it
follows), the Bundle a fresh id and timestamp.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fhirpathpy

from gateway.participants.directory import Participant
from gateway.participants.identifiers import EAN, SOR, UNIQUE_SYSTEMS
from gateway.search.dates import format_instant

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "formats" / "medcom-examples"
INVALID = frozenset({"HospitalNotification_Ex_TEK_FCC.json"})


def example_paths() -> list[Path]:
    return sorted(EXAMPLES.rglob("*.json"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def is_ack(bundle: dict[str, Any]) -> bool:
    header = bundle["entry"][0]["resource"]
    return bool((header.get("eventCoding") or {}).get("code") == "acknowledgement-message")


def _resource(bundle: dict[str, Any], reference: str) -> dict[str, Any]:
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if entry.get("fullUrl") == reference or (
            f"{resource['resourceType']}/{resource.get('id')}" == reference
        ):
            return resource  # type: ignore[no-any-return]
    raise KeyError(reference)


def _as(org: dict[str, Any], participant: Participant) -> None:
    ours = [i for i in participant.identifiers if i["system"] in UNIQUE_SYSTEMS]
    # MedCom lists EAN first, then SOR.
    ours.sort(key=lambda i: {EAN: 0, SOR: 1}.get(i["system"], 2))
    org["identifier"] = [dict(i) for i in ours]
    org["name"] = participant.display


def readdress(
    bundle: dict[str, Any],
    sender: Participant,
    receiver: Participant,
    *,
    now: datetime | None = None,
    header_id: str | None = None,
    acknowledged: str | None = None,
) -> dict[str, Any]:
    """``bundle`` from ``sender`` to ``receiver``, with fresh ids and timestamp.

    ``acknowledged``: for an Acknowledgement, the MessageHeader.id it answers now.
    """
    out = copy.deepcopy(bundle)
    header = out["entry"][0]["resource"]
    old = header["id"]
    new = header_id or str(uuid.uuid4())
    header["id"] = new
    out["entry"][0]["fullUrl"] = str(out["entry"][0]["fullUrl"]).replace(old, new)
    out["id"] = str(uuid.uuid4())
    out["timestamp"] = format_instant(now or datetime.now(UTC))
    _as(_resource(out, header["sender"]["reference"]), sender)
    for destination in header["destination"]:
        _as(_resource(out, destination["receiver"]["reference"]), receiver)
    previous = (header.get("response") or {}).get("identifier")
    for entry in out["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] != "Provenance":
            continue
        for target in resource.get("target", []):
            target["reference"] = str(target["reference"]).replace(old, new)
            if acknowledged and previous:
                target["reference"] = target["reference"].replace(previous, acknowledged)
        for entity in resource.get("entity", []):
            what = entity.get("what") or {}
            if acknowledged and previous and isinstance(what.get("reference"), str):
                what["reference"] = what["reference"].replace(previous, acknowledged)
    if acknowledged:
        header["response"]["identifier"] = acknowledged
    return out


# MedCom's acknowledgement TestScripts, as they state their assertions
# (medcomdk/dk-medcom-acknowledgement-testscripts, input/fsh/Asserts.fsh):
# assertMessageHeaderid and assertProvenanceEntityCount.
_ENTITY_NAMES_HEADER = (
    "Bundle.entry.resource.ofType(Provenance)"
    ".where(entity.what.reference.contains('{id}')).exists()"
)
_TWO_PROVENANCES = "Bundle.entry.resource.ofType(Provenance).count() = 2"


def testscript_assertions(ack: dict[str, Any], acknowledged: str) -> dict[str, bool]:
    """The two TestScript assertions on an Acknowledgement of ``acknowledged``."""
    names = fhirpathpy.evaluate(ack, _ENTITY_NAMES_HEADER.format(id=acknowledged))
    count = fhirpathpy.evaluate(ack, _TWO_PROVENANCES)
    return {
        "assertMessageHeaderid": names == [True],
        "assertProvenanceEntityCount": count == [True],
    }
