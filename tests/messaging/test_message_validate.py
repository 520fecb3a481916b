"""Independent validation of what travels: messages, acknowledgements, forwarded copies.

Everything is produced over real sockets (the gateway and the receiving app of
``test_flows``) and then checked by ``../shared/tools/fhir-validate`` (Medplum's validator plus
FHIR.js bindings) in one invocation: the gateway's Acknowledgements (``ok``; ``fatal-error``
with its OperationOutcome), message Bundles as senders build them (a Binary focus with a legacy
document; FHIR content), the copies the gateway forwards to receivers (consent-filtered,
re-signed, re-encrypted: through an endpoint and through the mailbox), a receiver's own
Acknowledgement and the one routed back to the sender. The store does not matter for the
shapes, so this runs on SQLite only. When the tool cannot run (exit 2, no Node) the test is
skipped loudly, and fails under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.messaging.message import MEETING_INVITATION
from gateway.settings import Settings
from tests.messaging.messaging_support import sample
from tests.messaging.receiver_app import acknowledgement
from tests.messaging.test_flows import (
    EMPLOYER_ROSKILDE,
    GP,
    GP_ROSKILDE,
    HOSPITAL,
    JOBCENTRE,
    MULIGHED,
    OLE_CPR,
    REHAB,
    REHAB_PLAN,
    SKS_D,
    World,
    care_communication,
    content_message,
    document_message,
    open_world,
    until,
)

TOOL = Path(__file__).resolve().parents[3] / "shared" / "tools" / "fhir-validate"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _cannot_run(reason: str) -> None:
    message = f"fhir-validate CANNOT RUN, MESSAGES NOT VALIDATED: {reason}"
    if IN_CI:
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


@pytest.fixture
def live(settings: Settings) -> Iterator[World]:
    with open_world(settings) as world:
        yield world


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_messages_acknowledgements_and_forwarded_copies_pass_fhir_validate(
    live: World, tmp_path: Path
) -> None:
    tool = Path(os.environ.get("BROBYGGER_FHIR_VALIDATE", TOOL))
    if not tool.is_file():
        _cannot_run(f"not found at {tool}")
    if shutil.which("node") is None:
        _cannot_run("Node.js is not installed")
    shapes: dict[str, dict[str, Any]] = {}
    # Ole's consent lets the job centre (his case holder) see his progress: the status note
    # below crosses from the health side to the employment side.
    ole = live.ensure_patient(JOBCENTRE, OLE_CPR, "Ole", "Kristensen")
    live.record_consent(
        JOBCENTRE, ole, JOBCENTRE, "sickness-benefit-follow-up", labels=("rehab-progress",)
    )

    # A message with a Binary focus (the GGOP rehabilitation plan), cc the job centre.
    plan = document_message(
        HOSPITAL, REHAB, sample(REHAB_PLAN), event="rehab-plan", cc=(JOBCENTRE,)
    )
    shapes["message-binary-focus"] = plan
    sent = live.send(HOSPITAL, plan)
    assert sent.code == "ok", sent.diagnostics()
    shapes["ack-ok"] = sent.ack
    shapes["forwarded-rehab-plan"] = live.receiving.wait_for(REHAB, sent.header_id).bundle
    shapes["ack-routed-to-sender"] = until(lambda: live.receiving.acks_for(HOSPITAL))[0]

    # A message with FHIR content (CareCommunication + scores).
    note = care_communication(
        "Statusnotat efter 6 uger", "Ole træner.", "2026-11-13T10:00:00+01:00", 1.0
    )
    shapes["message-fhir-content"] = note
    sent = live.send(REHAB, note)
    assert sent.code == "ok", sent.diagnostics()
    shapes["forwarded-care-communication"] = live.receiving.wait_for(
        JOBCENTRE, sent.header_id
    ).bundle

    # The round-table invitation (an Appointment naming the participants' Organizations).
    invitation = {
        "resourceType": "Appointment",
        "id": str(uuid.uuid4()),
        "status": "booked",
        "description": "Rundbordssamtale",
        "start": "2026-12-10T09:00:00+01:00",
        "end": "2026-12-10T10:00:00+01:00",
        "participant": [
            {"actor": {"reference": f"Organization/org-{n}"}, "status": "needs-action"}
            for n in (JOBCENTRE, REHAB, GP)
        ],
    }
    message = content_message(JOBCENTRE, REHAB, [invitation], event=MEETING_INVITATION, cc=(GP,))
    sent = live.send(JOBCENTRE, message)
    assert sent.code == "ok", sent.diagnostics()
    shapes["forwarded-invitation"] = live.receiving.wait_for(GP, sent.header_id).bundle

    # Through the mailbox: the Mulighedserklæring as the employer fetches it.
    statement = document_message(
        GP_ROSKILDE, EMPLOYER_ROSKILDE, sample(MULIGHED), event="medical-statement"
    )
    sent = live.send(GP_ROSKILDE, statement)
    assert sent.code == "ok", sent.diagnostics()
    items = until(
        lambda: [i for i in live.mailbox(EMPLOYER_ROSKILDE) if i["message_id"] == sent.header_id]
    )
    shapes["forwarded-via-mailbox"] = items[0]["bundle"]
    header = items[0]["bundle"]["entry"][0]["resource"]
    sender = next(
        e["resource"]
        for e in items[0]["bundle"]["entry"]
        if e.get("fullUrl") == header["sender"]["reference"]
    )
    shapes["ack-by-receiver"] = acknowledgement(
        header["id"], "ok", own=live.receiving.own_organization(EMPLOYER_ROSKILDE), to=sender
    )

    # A fatal-error: a diagnosis to an employer.
    condition = {
        "resourceType": "Condition",
        "id": str(uuid.uuid4()),
        "code": {"coding": [{"system": SKS_D, "code": "DM545"}]},
        "subject": {"display": "Birgitte"},
    }
    refused = live.send(
        GP_ROSKILDE,
        content_message(GP_ROSKILDE, EMPLOYER_ROSKILDE, [condition], event="medical-statement"),
    )
    assert refused.code == "fatal-error"
    shapes["ack-fatal-error"] = refused.ack
    assert any(e["resource"]["resourceType"] == "OperationOutcome" for e in refused.ack["entry"])

    files = []
    for name, bundle in shapes.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(bundle, ensure_ascii=False), encoding="utf-8")
        files.append(path)
    done = subprocess.run(
        [str(tool), *map(str, files)], capture_output=True, text=True, timeout=600, check=False
    )
    output = done.stdout + done.stderr
    if done.returncode == 2:
        _cannot_run(output.strip() or "exit 2")
    assert done.returncode == 0, output
    # Warnings are allowed (e.g. Appointment.participant.actor naming an Organization, which
    # R4 does not list but the consent module reads as the addressee); errors are not.
    assert output.count("VALID") >= len(files) and "INVALID" not in output, output
