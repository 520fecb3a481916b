"""Client assertion checking (pure): signature, algorithm, claims and lifetime rules."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OctKey

from gateway.auth.assertions import (
    InvalidClient,
    check_client_assertion,
    claimed_client,
    make_client_assertion,
)
from gateway.auth.keys import generate_encryption_key, generate_signing_key, public_jwks

TOKEN_URL = "http://testserver/auth/token"
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def es256() -> Key:
    return generate_signing_key("ES256")


@pytest.fixture(scope="module")
def other() -> Key:
    return generate_signing_key("ES256")


def check(assertion: str, *keys: Key, now: float = NOW, **kwargs: Any) -> Any:
    return check_client_assertion(
        assertion,
        jwks=public_jwks(keys),
        token_url=TOKEN_URL,
        now=now,
        max_lifetime=300,
        clock_skew=60,
        **kwargs,
    )


def make(key: Key, client: str = "alpha", **kwargs: Any) -> str:
    kwargs.setdefault("now", NOW)
    return make_client_assertion(key, client, TOKEN_URL, **kwargs)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "RS384"])
def test_each_accepted_algorithm_verifies(alg: str) -> None:
    key = generate_signing_key(alg)
    verified = check(make(key), key)
    assert verified.client_id == "alpha"
    assert verified.alg == alg
    assert verified.kid == key.thumbprint()
    assert verified.expires_at == NOW + 300


def test_private_jwk_dict_is_accepted(es256: Key) -> None:
    assertion = make(es256.as_dict(private=True))
    assert check(assertion, es256).jti


def test_key_rotation_old_and_new_keys_both_verify(es256: Key, other: Key) -> None:
    assert check(make(es256), other, es256).kid == es256.kid
    assert check(make(other), other, es256).kid == other.kid


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": NOW - 61}, "expired"),
        ({"iat": NOW - 100, "exp": NOW + 201}, "at most 300"),
        ({"iat": NOW + 120, "exp": NOW + 200}, "future"),
        ({"nbf": NOW + 120}, "not valid yet"),
        ({"aud": "http://elsewhere/auth/token"}, "aud"),
        ({"aud": ["http://elsewhere/auth/token"]}, "aud"),
        ({"sub": "beta"}, "'iss' and 'sub'"),
        ({"jti": ""}, "jti"),
        ({"jti": "x" * 256}, "jti"),
        ({"exp": "soon"}, "NumericDate"),
        ({"exp": True}, "NumericDate"),
    ],
)
def test_bad_claims_are_refused(es256: Key, claims: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidClient, match=message):
        check(make(es256, extra_claims=claims), es256)


def test_missing_exp_and_jti_are_refused(es256: Key) -> None:
    for name in ("exp", "jti"):
        claims = {"iss": "alpha", "sub": "alpha", "aud": TOKEN_URL, "iat": int(NOW), "jti": "j"}
        claims["exp"] = int(NOW + 60)
        del claims[name]
        header = {"alg": "ES256", "kid": es256.kid}
        with pytest.raises(InvalidClient, match=name):
            check(jwt.encode(header, claims, es256), es256)


def test_lifetime_without_iat_is_measured_from_now(es256: Key) -> None:
    ok = make(es256, extra_claims={"iat": None, "exp": NOW + 300})
    assert check(ok, es256)
    too_long = make(es256, extra_claims={"iat": None, "exp": NOW + 400})
    with pytest.raises(InvalidClient, match="at most 300"):
        check(too_long, es256)


def test_clock_skew_tolerates_a_just_expired_assertion(es256: Key) -> None:
    assertion = make(es256, now=NOW - 330)  # expired 30 s ago, skew is 60 s
    assert check(assertion, es256)


def test_audience_list_containing_the_token_url_is_accepted(es256: Key) -> None:
    assertion = make(es256, extra_claims={"aud": ["x", TOKEN_URL]})
    assert check(assertion, es256)


def test_signed_by_an_unregistered_key_is_refused(es256: Key, other: Key) -> None:
    with pytest.raises(InvalidClient, match="not a registered key"):
        check(make(other), es256)


def test_wrong_key_behind_a_registered_kid_is_refused(es256: Key, other: Key) -> None:
    header = {"alg": "ES256", "kid": es256.kid}
    claims = {"iss": "alpha", "sub": "alpha", "aud": TOKEN_URL, "exp": NOW + 60, "jti": "j"}
    forged = jwt.encode(header, claims, other)
    with pytest.raises(InvalidClient, match="signature"):
        check(forged, es256)


def test_tampered_payload_is_refused(es256: Key) -> None:
    header, _payload, signature = make(es256).split(".")
    claims = {"iss": "alpha", "sub": "alpha", "aud": TOKEN_URL, "exp": NOW + 60, "jti": "new"}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidClient, match="signature"):
        check(f"{header}.{payload}.{signature}", es256)


@pytest.mark.parametrize("alg", ["HS256", "none", "ES512", "PS256"])
def test_other_algorithms_are_refused(es256: Key, alg: str) -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": alg, "kid": es256.kid}).encode())
    _h, payload, signature = make(es256).split(".")
    forged = f"{header.rstrip(b'=').decode()}.{payload}.{signature}"
    with pytest.raises(InvalidClient, match="alg must be one of"):
        check(forged, es256)


def test_hmac_with_the_public_key_as_secret_is_refused(es256: Key) -> None:
    secret = OctKey.import_key(json.dumps(es256.as_dict()).encode())
    header = {"alg": "HS256", "kid": es256.kid}
    claims = {"iss": "alpha", "sub": "alpha", "aud": TOKEN_URL, "exp": NOW + 60, "jti": "j"}
    with pytest.raises(InvalidClient):
        check(jwt.encode(header, claims, secret), es256)


def test_algorithm_must_fit_the_registered_key(es256: Key) -> None:
    assertion = make(es256, alg="ES256")
    _header, payload, signature = assertion.split(".")
    fake = base64.urlsafe_b64encode(json.dumps({"alg": "ES384", "kid": es256.kid}).encode())
    with pytest.raises(InvalidClient, match="does not fit"):
        check(f"{fake.rstrip(b'=').decode()}.{payload}.{signature}", es256)


def test_encryption_keys_cannot_sign_assertions() -> None:
    enc = generate_encryption_key()
    header = {"alg": "ES256", "kid": enc.kid}
    claims = {"iss": "alpha", "sub": "alpha", "aud": TOKEN_URL, "exp": NOW + 60, "jti": "j"}
    raw = {k: v for k, v in enc.as_dict(private=True).items() if k not in ("use", "alg")}
    assertion = jwt.encode(header, claims, ECKey.import_key(raw))
    with pytest.raises(InvalidClient, match="not a registered key"):
        check(assertion, enc)


def test_missing_kid_is_refused(es256: Key) -> None:
    claims = {"iss": "alpha", "sub": "alpha", "aud": TOKEN_URL, "exp": NOW + 60, "jti": "j"}
    with pytest.raises(InvalidClient, match="kid"):
        check(jwt.encode({"alg": "ES256"}, claims, es256), es256)


def test_client_id_parameter_must_match_the_issuer(es256: Key) -> None:
    with pytest.raises(InvalidClient, match="client_id"):
        check(make(es256), es256, client_id="beta")
    assert check(make(es256), es256, client_id="alpha")


@pytest.mark.parametrize("text", ["", "abc", "a.b", "a.b.c.d.e", "!!!.???.###"])
def test_garbage_is_refused_before_any_lookup(text: str) -> None:
    with pytest.raises(InvalidClient):
        claimed_client(text)


def test_default_lifetime_is_five_minutes(es256: Key) -> None:
    now = time.time()
    claims = jwt.decode(make_client_assertion(es256, "a", TOKEN_URL), es256).claims
    assert claims["iss"] == claims["sub"] == "a"
    assert claims["aud"] == TOKEN_URL
    assert claims["exp"] - claims["iat"] == 300
    assert abs(claims["iat"] - now) < 5
