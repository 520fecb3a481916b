"""What the gateway returns to and forwards for MedCom systems is valid FHIR R4 (external
validator): its Acknowledgements (ok, and fatal-error for ``TEK_FCC``) and a delivered copy
of a CareCommunication with an attachment."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.deps import get_principal
from gateway.settings import Settings
from tests.messaging import medcom_support as medcom
from tests.messaging.messaging_support import demo
from tests.messaging.test_medcom import Caller, mailbox, send


def test_medcom_acknowledgements_and_copies_are_valid_r4(
    tmp_path: Path, fhir_validate: Callable[[list[Path]], object]
) -> None:
    settings = Settings(
        environment="test",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/store.db",
        base_url="http://testserver",
        var_dir=tmp_path / "var",
        keys_dir=tmp_path / "keys",
        demo=True,
        delivery_in_process=False,
    )
    caller = Caller()
    app = create_app(settings)
    app.dependency_overrides[get_principal] = caller
    hospital, municipality = demo("auh-ortopaedi"), demo("aarhus-genoptraening")
    files: list[Path] = []
    with TestClient(app, base_url="http://testserver") as client:
        for name in (
            "CareCommunication_Ex_send-I-new-attachment.json",
            "HospitalNotification_Ex_STIN_A.json",
            "HospitalNotification_Ex_TEK_FCC.json",
        ):
            path = next(p for p in medcom.example_paths() if p.name == name)
            message = medcom.readdress(medcom.load(path), hospital, municipality)
            status, ack = send(client, caller, settings, "auh-ortopaedi", message)
            assert status == 200
            files.append(tmp_path / f"ack-{name}")
            files[-1].write_text(json.dumps(ack))
        for message_id, item in mailbox(client, caller, settings, "aarhus-genoptraening").items():
            files.append(tmp_path / f"copy-{message_id}.json")
            files[-1].write_text(json.dumps(item["bundle"]))
    assert len(files) == 5
    result = fhir_validate(files)
    assert result.returncode == 0, result.output  # type: ignore[attr-defined]
