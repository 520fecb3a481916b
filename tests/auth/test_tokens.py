"""Access tokens: issued by the gateway key, verified without the database."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from joserfc import jwt

from gateway.auth.keys import generate_signing_key
from gateway.auth.tokens import TokenService
from gateway.errors import Unauthorized
from gateway.settings import Settings

NOW = 1_800_000_000


def service(key_dir: Path, base_url: str = "http://testserver") -> TokenService:
    settings = Settings(environment="test", base_url=base_url, keys_dir=key_dir)
    return TokenService.from_settings(settings)


def issue(tokens: TokenService, participant: str = "jobcenter-aarhus") -> str:
    return tokens.issue(
        participant=participant,
        kind="jobcentre",
        organization_id=f"org-{participant}",
        scopes=["system/*.read", "system/Task.cu"],
        purpose="sickness-benefit-follow-up",
        now=NOW,
    ).access_token


def test_issue_and_verify_round_trip(tmp_path: Path) -> None:
    tokens = service(tmp_path)
    principal = tokens.verify_access_token(issue(tokens), now=NOW + 10)
    assert principal.participant == principal.client_id == "jobcenter-aarhus"
    assert principal.kind == "jobcentre"
    assert principal.organization_id == "org-jobcenter-aarhus"
    assert principal.scopes == {"system/*.read", "system/Task.cu"}
    assert principal.purpose == "sickness-benefit-follow-up"
    assert principal.token_id


def test_claims_and_header(tmp_path: Path) -> None:
    tokens = service(tmp_path)
    decoded = jwt.decode(issue(tokens), tokens.key)
    assert decoded.header == {"alg": "ES256", "typ": "at+jwt", "kid": tokens.kid}
    claims = decoded.claims
    assert claims["iss"] == "http://testserver"
    assert claims["aud"] == "http://testserver/fhir"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["kind"] == "jobcentre"
    assert claims["org"] == "org-jobcenter-aarhus"


def test_processes_sharing_the_key_file_accept_each_others_tokens(tmp_path: Path) -> None:
    first, second = service(tmp_path), service(tmp_path)
    assert second.verify_access_token(issue(first), now=NOW).participant == "jobcenter-aarhus"
    assert (tmp_path / "gateway-signing.jwk.json").stat().st_mode & 0o777 == 0o600


def _refused(tokens: TokenService, token: str, now: int = NOW) -> Unauthorized:
    with pytest.raises(Unauthorized) as caught:
        tokens.verify_access_token(token, now=now)
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")
    assert 'error="invalid_token"' in caught.value.headers["WWW-Authenticate"]
    return caught.value


def test_expired_token_is_refused(tmp_path: Path) -> None:
    tokens = service(tmp_path)
    _refused(tokens, issue(tokens), now=NOW + 300)


def test_tampered_subject_is_refused(tmp_path: Path) -> None:
    tokens = service(tmp_path)
    header, payload, signature = issue(tokens).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "laegerne-soendergade"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    _refused(tokens, f"{header}.{forged}.{signature}")


def test_token_from_another_gateway_is_refused(tmp_path: Path) -> None:
    ours, theirs = service(tmp_path / "a"), service(tmp_path / "b")
    _refused(ours, issue(theirs))


def test_token_for_another_audience_is_refused(tmp_path: Path) -> None:
    # Same key, different deployment URL: the token is not for us.
    ours, theirs = service(tmp_path), service(tmp_path, "http://other.example")
    _refused(ours, issue(theirs))


def test_a_client_assertion_is_not_an_access_token(tmp_path: Path) -> None:
    tokens = service(tmp_path)
    claims = {
        "iss": "http://testserver",
        "aud": "http://testserver/fhir",
        "sub": "x",
        "kind": "gp",
        "scope": "system/*.*",
        "exp": NOW + 60,
    }
    other_type = jwt.encode({"alg": "ES256", "kid": tokens.kid}, claims, tokens.key)
    _refused(tokens, other_type)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "a.b.c.d.e"])
def test_garbage_is_refused(tmp_path: Path, token: str) -> None:
    _refused(service(tmp_path), token)


def test_production_refuses_to_generate_the_signing_key(tmp_path: Path) -> None:
    settings = Settings(
        environment="production",
        database_url="postgresql+psycopg://x@127.0.0.1/db",
        keys_dir=tmp_path / "keys",
    )
    with pytest.raises(Exception, match="gateway signing key"):
        TokenService.from_settings(settings)
    assert not (tmp_path / "keys" / "gateway-signing.jwk.json").exists()


def test_production_uses_an_existing_signing_key(tmp_path: Path) -> None:
    service(tmp_path)  # development creates it
    settings = Settings(
        environment="production",
        database_url="postgresql+psycopg://x@127.0.0.1/db",
        keys_dir=tmp_path,
    )
    assert TokenService.from_settings(settings).kid


def test_the_gateway_key_must_be_p256(tmp_path: Path) -> None:
    from gateway.auth.keys import write_private_key

    write_private_key(tmp_path / "gateway-signing.jwk.json", generate_signing_key("RS384"))
    with pytest.raises(Exception, match="P-256"):
        service(tmp_path)


def test_a_token_is_verified_once_yet_its_time_window_holds_on_every_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = service(tmp_path)
    token = issue(tokens)
    calls: list[str] = []
    real_decode = jwt.decode

    def counting_decode(*args: object, **kwargs: object) -> object:
        calls.append("decode")
        return real_decode(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("gateway.auth.tokens.jwt.decode", counting_decode)
    first = tokens.verify_access_token(token, now=NOW + 1)
    for later in (NOW + 2, NOW + 100, NOW + 299):
        assert tokens.verify_access_token(token, now=later) == first
    assert calls == ["decode"]  # the signature is checked once per token
    # Remembered or not, an expired token is refused, and a token from the future too.
    _refused(tokens, token, now=NOW + 300)
    _refused(tokens, token, now=NOW + 301)
    other = issue(tokens, "aarhus-genoptraening")
    tokens.verify_access_token(other, now=NOW + 1)
    _refused(tokens, other, now=NOW - 120)
    # A tampered token is never taken for a remembered one.
    _refused(tokens, other[:-4] + ("AAAA" if not other.endswith("AAAA") else "BBBB"), NOW + 1)
