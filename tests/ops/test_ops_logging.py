"""JSON access logs, request ids, and no health data in the log."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from gateway.ops import JsonFormatter, configure_logging, current_request_id, install_operations
from gateway.settings import Settings

CPR = "0101801234"
CPR_SEARCH = f"/fhir/Patient?identifier=urn:oid:1.2.208.176.1.2|{CPR}"


def _json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line parsed as JSON (fails the test when one is not)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _access(text: str) -> list[dict[str, Any]]:
    return [entry for entry in _json_lines(text) if entry["logger"] == "gateway.access"]


# --- request ids ---------------------------------------------------------------------------


def test_request_id_is_echoed(ops_client: TestClient) -> None:
    response = ops_client.get("/healthz", headers={"X-Request-ID": "abc.DEF_123-x"})
    assert response.headers["x-request-id"] == "abc.DEF_123-x"


@pytest.mark.parametrize(
    "offered", [None, "", "x" * 65, "has space", "semi;colon", f"cpr={CPR}", "ø"]
)
def test_request_id_is_generated_unless_sane(ops_client: TestClient, offered: str | None) -> None:
    headers = {} if offered is None else {"X-Request-ID": offered.encode("utf-8")}
    returned = ops_client.get("/healthz", headers=headers).headers["x-request-id"]
    assert returned != offered
    assert uuid.UUID(returned).version == 4


def test_request_id_is_on_error_responses(ops_client: TestClient) -> None:
    response = ops_client.get("/fhir/Patient/1", headers={"X-Request-ID": "req-401"})
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "req-401"


# --- access log ----------------------------------------------------------------------------


def test_one_access_line_per_request_without_health_data(
    ops_client: TestClient, ops_app: FastAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    token = ops_app.state.tokens.issue(
        participant="aarhus-jobcenter",
        kind="municipality",
        organization_id=None,
        scopes=["system/Patient.read"],
        purpose=None,
    )
    capsys.readouterr()
    response = ops_client.get(
        CPR_SEARCH,
        headers={"Authorization": f"Bearer {token.access_token}", "X-Request-ID": "req-1"},
    )
    err = capsys.readouterr().err
    assert CPR not in err
    assert "identifier" not in err
    assert "/fhir/Patient" not in err
    [line] = _access(err)
    assert line["request_id"] == "req-1"
    assert line["participant"] == "aarhus-jobcenter"
    assert line["method"] == "GET"
    assert line["route"] == "/fhir/{resource_type}"
    assert line["status"] == response.status_code
    assert line["level"] == "INFO"
    assert isinstance(line["duration_ms"], float)
    assert line["time"].endswith("Z")
    assert line["message"] == f"GET /fhir/{{resource_type}} {response.status_code}"


def test_anonymous_and_unmatched_requests(
    ops_client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    ops_client.get(CPR_SEARCH)
    ops_client.get(f"/nowhere/{CPR}?name=Hansen")
    err = capsys.readouterr().err
    assert CPR not in err
    assert "Hansen" not in err
    first, second = _access(err)
    assert "participant" not in first
    assert first["status"] == 401
    assert second["route"] == "<unmatched>"
    assert second["status"] == 404


# --- unhandled errors ----------------------------------------------------------------------


@pytest.fixture
def failing_app(ops_settings: Settings) -> FastAPI:
    app = FastAPI()
    install_operations(app, ops_settings)

    @app.get("/boom/{patient}")
    async def boom(patient: str) -> None:
        try:
            raise KeyError(patient)
        except KeyError as exc:
            raise RuntimeError(f"lookup failed for {patient}") from exc

    return app


def test_unhandled_error_is_a_500_outcome_with_request_id(
    failing_app: FastAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    client = TestClient(failing_app, raise_server_exceptions=False)
    capsys.readouterr()
    response = client.get(f"/boom/{CPR}", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-500"
    assert response.json()["resourceType"] == "OperationOutcome"
    assert CPR not in response.text
    err = capsys.readouterr().err
    assert CPR not in err
    entries = _json_lines(err)
    [error] = [e for e in entries if e["logger"] == "gateway.error"]
    assert error["request_id"] == "req-500"
    assert error["route"] == "/boom/{patient}"
    assert error["error"] == "RuntimeError"
    assert "KeyError (message withheld from the log)" in error["traceback"]
    assert "direct cause" in error["traceback"]
    [access] = [e for e in entries if e["logger"] == "gateway.access"]
    assert (access["status"], access["level"]) == (500, "ERROR")


def test_unhandled_error_still_reaches_the_test_client(failing_app: FastAPI) -> None:
    with pytest.raises(RuntimeError):
        TestClient(failing_app).get("/boom/1")


def test_uvicorn_does_not_repeat_a_logged_traceback(
    failing_app: FastAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        TestClient(failing_app).get("/boom/1")
    except RuntimeError as exc:
        capsys.readouterr()
        logging.getLogger("uvicorn.error").error("Exception in ASGI application", exc_info=exc)
        logging.getLogger("uvicorn.error").error("other", exc_info=ValueError("x"))
    [entry] = _json_lines(capsys.readouterr().err)
    assert entry["message"] == "other"


# --- the formatter and configuration -------------------------------------------------------


def test_formatter_outside_a_request() -> None:
    record = logging.LogRecord("gateway.x", logging.WARNING, __file__, 1, "hej %s", ("æø",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry == {
        "time": entry["time"],
        "level": "WARNING",
        "logger": "gateway.x",
        "message": "hej æø",
    }
    assert current_request_id() is None


def test_formatter_withholds_exception_messages() -> None:
    try:
        raise ValueError(f"bad CPR {CPR}")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("gateway.x", logging.ERROR, __file__, 1, "failed", (), exc_info)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert CPR not in line
    assert json.loads(line)["error"] == "ValueError"


def test_configure_logging_is_idempotent() -> None:
    configure_logging("info")
    configure_logging("DEBUG")
    configure_logging("INFO")
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]
    assert len(ours) == 1
    assert root.level == logging.INFO
    assert logging.getLogger("uvicorn.access").disabled
    assert logging.getLogger("sqlalchemy").level == logging.WARNING
    assert logging.getLogger("uvicorn.error").propagate


def test_configure_logging_refuses_unknown_levels() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("chatty")


def test_uvicorn_lines_come_out_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    capsys.readouterr()
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /fhir/Patient?x=%s"', CPR)
    [entry] = _json_lines(capsys.readouterr().err)
    assert entry["logger"] == "uvicorn.error"
    assert entry["message"] == "Started server process [42]"
