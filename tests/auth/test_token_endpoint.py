"""The token endpoint and bearer tokens through the real app (lifespan, demo participants)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import Key

from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import generate_signing_key, public_jwk, public_jwks
from gateway.participants.directory import Participant, ParticipantDirectory
from gateway.settings import Settings

RequestToken = Callable[..., Any]


def token_form(assertion: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion,
        **extra,
    }


def _assert_oauth_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert body["error_description"]
    return body


async def test_smart_configuration(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/smart-configuration")
    assert response.status_code == 200
    config = response.json()
    assert config["token_endpoint"] == "http://testserver/auth/token"
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert config["token_endpoint_auth_signing_alg_values_supported"] == [
        "ES256",
        "ES384",
        "RS384",
    ]
    assert config["grant_types_supported"] == ["client_credentials"]
    assert "client-confidential-asymmetric" in config["capabilities"]
    assert "system/*.read" in config["scopes_supported"]
    assert "patient/Consent.write" in config["scopes_supported"]
    assert "system/*.*" not in config["scopes_supported"]


async def test_demo_participant_gets_a_token_that_opens_the_fhir_api(
    client: httpx.AsyncClient, request_token: RequestToken, app: FastAPI
) -> None:
    response = await request_token(
        "jobcenter-aarhus",
        purpose="sickness-benefit-follow-up",
        scope="system/*.read system/Task.cu",
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "system/*.read system/Task.cu"
    assert body["purpose"] == "sickness-benefit-follow-up"

    principal = app.state.tokens.verify_access_token(body["access_token"])
    assert principal.participant == "jobcenter-aarhus"
    assert principal.kind == "jobcentre"
    assert principal.organization_id == "org-jobcenter-aarhus"

    headers = {"Authorization": f"Bearer {body['access_token']}"}
    search = await client.get("/fhir/Patient", headers=headers)
    assert search.status_code == 200, search.text
    assert search.json()["resourceType"] == "Bundle"


async def test_default_scope_and_system_qualified_purpose(request_token: RequestToken) -> None:
    response = await request_token(
        "auh-ortopaedi", purpose="http://terminology.hl7.org/CodeSystem/v3-ActReason|TREAT"
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/*.read"
    assert response.json()["purpose"] == "TREAT"


async def test_fhir_without_a_token_is_401_operation_outcome(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/Patient")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_metadata_needs_no_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/metadata")
    assert response.status_code == 200
    assert response.json()["resourceType"] == "CapabilityStatement"


async def test_garbage_bearer_token_is_401_invalid_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/Patient", headers={"Authorization": "Bearer abc.def.ghi"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_sub_tampered_token_is_401(
    client: httpx.AsyncClient, request_token: RequestToken
) -> None:
    token = (await request_token("lys-montage")).json()["access_token"]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(sub="auh-ortopaedi", client_id="auh-ortopaedi", kind="hospital")
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = await client.get(
        "/fhir/Patient", headers={"Authorization": f"Bearer {header}.{forged}.{signature}"}
    )
    assert response.status_code == 401
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_reused_jti_is_refused(
    request_token: RequestToken, dev_key: Callable[[str], Key], demo_settings: Settings
) -> None:
    assertion = make_client_assertion(
        dev_key("roskilde-traening"), "roskilde-traening", demo_settings.token_url
    )
    assert (await request_token("roskilde-traening", assertion=assertion)).status_code == 200
    again = await request_token("roskilde-traening", assertion=assertion)
    assert "used before" in _assert_oauth_error(again, 401, "invalid_client")["error_description"]


async def test_same_jti_from_two_clients_is_fine(
    request_token: RequestToken, dev_key: Callable[[str], Key], demo_settings: Settings
) -> None:
    for name in ("jobcenter-aarhus", "jobcenter-roskilde"):
        assertion = make_client_assertion(
            dev_key(name), name, demo_settings.token_url, jti="shared-jti"
        )
        assert (await request_token(name, assertion=assertion)).status_code == 200


async def test_concurrent_replays_win_once(
    request_token: RequestToken, dev_key: Callable[[str], Key], demo_settings: Settings
) -> None:
    assertion = make_client_assertion(
        dev_key("laegerne-soendergade"), "laegerne-soendergade", demo_settings.token_url
    )
    responses = await asyncio.gather(
        *(request_token("laegerne-soendergade", assertion=assertion) for _ in range(5))
    )
    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401, 401]


def _signed(key: Key, client: str, settings: Settings, **kwargs: Any) -> str:
    return make_client_assertion(key, client, settings.token_url, **kwargs)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda k, s: _signed(k, "jobcenter-aarhus", s, now=time.time() - 400), "expired"),
        (lambda k, s: _signed(k, "jobcenter-aarhus", s, lifetime=301), "at most 300"),
        (lambda k, s: _signed(k, "jobcenter-aarhus", s, lifetime=3600), "at most 300"),
        (
            lambda k, s: make_client_assertion(k, "jobcenter-aarhus", "http://testserver/token"),
            "aud",
        ),
        (
            lambda k, s: _signed(k, "jobcenter-aarhus", s, extra_claims={"sub": "lys-montage"}),
            "'iss' and 'sub'",
        ),
        (lambda k, s: _signed(k, "jobcenter-aarhus", s, extra_claims={"jti": None}), "jti"),
    ],
)
async def test_bad_assertions_are_refused(
    request_token: RequestToken,
    dev_key: Callable[[str], Key],
    demo_settings: Settings,
    build: Callable[[Key, Settings], str],
    message: str,
) -> None:
    assertion = build(dev_key("jobcenter-aarhus"), demo_settings)
    response = await request_token("jobcenter-aarhus", assertion=assertion)
    assert message in _assert_oauth_error(response, 401, "invalid_client")["error_description"]


async def test_signed_with_another_participants_key_is_refused(
    request_token: RequestToken, dev_key: Callable[[str], Key]
) -> None:
    response = await request_token("jobcenter-aarhus", key=dev_key("lys-montage"))
    _assert_oauth_error(response, 401, "invalid_client")


async def test_unknown_client_is_refused(request_token: RequestToken) -> None:
    response = await request_token("nobody", key=generate_signing_key())
    body = _assert_oauth_error(response, 401, "invalid_client")
    assert body["error_description"] == "unknown client"


async def test_client_id_parameter_must_match(request_token: RequestToken) -> None:
    response = await request_token("jobcenter-aarhus", client_id="lys-montage")
    _assert_oauth_error(response, 401, "invalid_client")


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type"),
        ({"grant_type": ""}, 400, "invalid_request"),
        ({"client_assertion_type": "urn:other"}, 401, "invalid_client"),
        ({"client_assertion": ""}, 401, "invalid_client"),
        ({"client_assertion": "not-a-jwt"}, 401, "invalid_client"),
        ({"purpose": "marketing"}, 400, "invalid_request"),
        ({"scope": "patient/*.read"}, 400, "invalid_scope"),
    ],
)
async def test_bad_token_requests(
    client: httpx.AsyncClient,
    dev_key: Callable[[str], Key],
    demo_settings: Settings,
    form: dict[str, str],
    status: int,
    error: str,
) -> None:
    assertion = _signed(dev_key("jobcenter-aarhus"), "jobcenter-aarhus", demo_settings)
    response = await client.post("/auth/token", data={**token_form(assertion), **form})
    _assert_oauth_error(response, status, error)


async def test_bad_request_does_not_spend_the_assertion(
    client: httpx.AsyncClient, dev_key: Callable[[str], Key], demo_settings: Settings
) -> None:
    assertion = _signed(dev_key("jobcenter-aarhus"), "jobcenter-aarhus", demo_settings)
    refused = await client.post("/auth/token", data=token_form(assertion, purpose="x"))
    assert refused.status_code == 400
    assert (await client.post("/auth/token", data=token_form(assertion))).status_code == 200


async def test_token_request_must_be_a_form(
    client: httpx.AsyncClient, dev_key: Callable[[str], Key], demo_settings: Settings
) -> None:
    assertion = _signed(dev_key("jobcenter-aarhus"), "jobcenter-aarhus", demo_settings)
    response = await client.post("/auth/token", json=token_form(assertion))
    _assert_oauth_error(response, 400, "invalid_request")
    repeated = "grant_type=client_credentials&grant_type=client_credentials"
    response = await client.post(
        "/auth/token",
        content=repeated,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    _assert_oauth_error(response, 400, "invalid_request")


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
async def test_registered_es384_and_rs384_keys_are_accepted(
    app: FastAPI, request_token: RequestToken, alg: str
) -> None:
    key = generate_signing_key(alg)
    name = f"client-{alg.lower()}"
    await ParticipantDirectory(app.state.database).add(
        Participant(name, "employer", f"Test {alg}", jwks=public_jwks([key])),
        store=app.state.store,
    )
    response = await request_token(name, key=key)
    assert response.status_code == 200, response.text
    principal = app.state.tokens.verify_access_token(response.json()["access_token"])
    assert principal.participant == name and principal.kind == "employer"


async def test_rotated_key_and_previous_key_both_work(
    app: FastAPI, request_token: RequestToken, dev_key: Callable[[str], Key]
) -> None:
    old = dev_key("roskilde-hjemmepleje")
    new = generate_signing_key()
    directory = ParticipantDirectory(app.state.database)
    await directory.add_signing_key("roskilde-hjemmepleje", public_jwk(new), keep_previous=1)
    assert (await request_token("roskilde-hjemmepleje", key=new)).status_code == 200
    assert (await request_token("roskilde-hjemmepleje", key=old)).status_code == 200
    newer = generate_signing_key()
    await directory.add_signing_key("roskilde-hjemmepleje", public_jwk(newer), keep_previous=1)
    refused = await request_token("roskilde-hjemmepleje", key=old)
    _assert_oauth_error(refused, 401, "invalid_client")
    assert (await request_token("roskilde-hjemmepleje", key=new)).status_code == 200
