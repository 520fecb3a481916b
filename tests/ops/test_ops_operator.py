"""/metrics needs the operator token; /openapi.json and /docs a participant's token or it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.ops import operator_token_path
from gateway.settings import Settings

PROTECTED = ("/metrics", "/openapi.json", "/docs")
OPERATOR_REALM = 'Bearer realm="brobygger-operator"'
REALM = 'Bearer realm="brobygger"'


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _operator(app: FastAPI) -> dict[str, str]:
    token = app.state.operator_token
    assert isinstance(token, str) and len(token) >= 32
    return _bearer(token)


def _participant(app: FastAPI) -> dict[str, str]:
    issued = app.state.tokens.issue(
        participant="jobcenter-aarhus",
        kind="jobcentre",
        organization_id="org-jobcenter-aarhus",
        scopes=["system/*.read"],
        purpose="sickness-benefit-follow-up",
    )
    return _bearer(issued.access_token)


def _refused(client: TestClient, path: str, headers: dict[str, str] | None = None) -> str:
    """A 401 OperationOutcome; returns its WWW-Authenticate challenge."""
    response = client.get(path, headers=headers or {})
    assert response.status_code == 401, (path, response.text)
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "login"
    assert "brobygger_http" not in response.text and "paths" not in response.text
    challenge: str = response.headers["www-authenticate"]
    return challenge


@pytest.mark.parametrize("path", PROTECTED)
def test_nothing_answers_without_a_token(ops_client: TestClient, path: str) -> None:
    challenge = _refused(ops_client, path)
    assert challenge == (OPERATOR_REALM if path == "/metrics" else REALM)


@pytest.mark.parametrize("path", PROTECTED)
@pytest.mark.parametrize("token", ["nope", "abc.def.ghi", "x" * 64])
def test_a_wrong_token_is_invalid_token(ops_client: TestClient, path: str, token: str) -> None:
    assert 'error="invalid_token"' in _refused(ops_client, path, _bearer(token))


def test_metrics_answer_the_operator_only(ops_client: TestClient, ops_app: FastAPI) -> None:
    assert 'error="invalid_token"' in _refused(ops_client, "/metrics", _participant(ops_app))
    response = ops_client.get("/metrics", headers=_operator(ops_app))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "brobygger_http_requests_total" in response.text


@pytest.mark.parametrize("who", ["participant", "operator"])
def test_openapi_and_docs_answer_participants_and_the_operator(
    ops_client: TestClient, ops_app: FastAPI, who: str
) -> None:
    headers = _participant(ops_app) if who == "participant" else _operator(ops_app)
    document = ops_client.get("/openapi.json", headers=headers)
    assert document.status_code == 200, document.text
    assert document.headers["cache-control"] == "no-store"
    spec = document.json()
    assert "/auth/token" in spec["paths"] and "/fhir/{resource_type}" in spec["paths"]
    for hidden in ("/openapi.json", "/docs", "/metrics", "/healthz"):
        assert hidden not in spec["paths"]
    page = ops_client.get("/docs", headers=headers)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    # The document is in the page: the browser makes no second (unauthenticated) request.
    assert "url: ''" in page.text and '"spec":' in page.text and "/auth/token" in page.text


@pytest.mark.parametrize("path", ["/redoc", "/docs/oauth2-redirect"])
def test_redoc_and_the_oauth_redirect_are_not_served(ops_client: TestClient, path: str) -> None:
    assert ops_client.get(path).status_code == 404


def test_probes_stay_open(ops_client: TestClient) -> None:
    assert ops_client.get("/healthz").status_code == 200
    assert ops_client.get("/readyz").status_code == 200


# --- where the operator token comes from ---------------------------------------------------------


def test_outside_production_the_token_file_is_generated_once(ops_settings: Settings) -> None:
    path = operator_token_path(ops_settings)
    assert not path.exists()
    first = create_app(ops_settings)
    token = path.read_text().strip()
    assert first.state.operator_token == token and len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = create_app(ops_settings)
    assert second.state.operator_token == token  # several workers share it
    with TestClient(second) as client:
        assert client.get("/metrics", headers=_bearer(token)).status_code == 200


def test_the_setting_wins_and_writes_no_file(ops_settings: Settings) -> None:
    token = "an-operator-token-of-at-least-32-characters"
    settings = ops_settings.model_copy(update={"operator_token": SecretStr(token)})
    app = create_app(settings)
    assert app.state.operator_token == token
    assert not operator_token_path(settings).exists()


def test_the_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROBYGGER_OPERATOR_TOKEN", "e" * 40)
    settings = Settings()
    assert settings.operator_token is not None
    assert settings.operator_token.get_secret_value() == "e" * 40
    assert "e" * 40 not in repr(settings)  # a secret: never printed with the settings


def test_a_short_operator_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROBYGGER_OPERATOR_TOKEN", "short")
    with pytest.raises(ValidationError, match="at least 32"):
        Settings()


def test_an_empty_operator_token_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROBYGGER_OPERATOR_TOKEN", "")
    assert Settings().operator_token is None


def _production(tmp_path: Path) -> Settings:
    return Settings(
        environment="production",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/p.db",
        keys_dir=tmp_path / "prod-keys",
        var_dir=tmp_path / "var",
        base_url="http://testserver",
    )


def test_production_generates_no_token_and_metrics_refuse_everyone(tmp_path: Path) -> None:
    settings = _production(tmp_path)
    app = create_app(settings)
    assert app.state.operator_token is None
    assert not operator_token_path(settings).exists()
    client = TestClient(app)  # no lifespan: production would want its signing key
    assert 'error="invalid_token"' in _refused(client, "/metrics", _bearer("y" * 40))


def test_production_uses_a_token_file_put_there(tmp_path: Path) -> None:
    settings = _production(tmp_path)
    path = operator_token_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text("p" * 48 + "\n")
    app = create_app(settings)
    assert app.state.operator_token == "p" * 48
    assert TestClient(app).get("/metrics", headers=_bearer("p" * 48)).status_code == 200
