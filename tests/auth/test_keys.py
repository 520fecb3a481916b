"""Key files and the public JWKS a participant registers."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import OctKey

from gateway.auth.keys import (
    InvalidJwks,
    KeyUnavailable,
    generate_encryption_key,
    generate_signing_key,
    load_or_create_key,
    private_key_path,
    public_jwk,
    public_jwks,
    read_private_key,
    validate_public_jwks,
    write_private_key,
)


def _b64int(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_generated_keys_use_the_thumbprint_as_kid() -> None:
    for alg in ("ES256", "ES384", "RS384"):
        key = generate_signing_key(alg)
        assert key.kid == key.thumbprint()
        assert key["alg"] == alg and key["use"] == "sig"
    enc = generate_encryption_key()
    assert enc["use"] == "enc" and enc.kid == enc.thumbprint()


def test_private_key_files_are_0600_and_reloadable(tmp_path: Path) -> None:
    key = generate_signing_key()
    path = private_key_path(tmp_path / "keys", "alpha")
    write_private_key(path, key)
    assert path.name == "alpha.jwk.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_private_key(path).as_dict(private=True) == key.as_dict(private=True)
    assert list(path.parent.glob(".*tmp")) == []


def test_existing_key_file_wins_unless_replacing(tmp_path: Path) -> None:
    path = tmp_path / "a.jwk.json"
    first, second = generate_signing_key(), generate_signing_key()
    write_private_key(path, first)
    with pytest.raises(FileExistsError):
        write_private_key(path, second)
    assert load_or_create_key(path).kid == first.kid
    write_private_key(path, second, replace=True)
    assert read_private_key(path).kid == second.kid


def test_load_or_create_key_is_stable(tmp_path: Path) -> None:
    path = private_key_path(tmp_path, "b", use="enc")
    assert path.name == "b.enc.jwk.json"
    assert load_or_create_key(path, use="enc").kid == load_or_create_key(path, use="enc").kid


def test_unreadable_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyUnavailable, match="does not exist"):
        read_private_key(tmp_path / "missing.jwk.json")
    (tmp_path / "bad.jwk.json").write_text("{")
    with pytest.raises(KeyUnavailable, match="readable"):
        read_private_key(tmp_path / "bad.jwk.json")
    (tmp_path / "pub.jwk.json").write_text(json.dumps(public_jwk(generate_signing_key())))
    with pytest.raises(KeyUnavailable, match="no private key"):
        read_private_key(tmp_path / "pub.jwk.json")


def test_public_jwks_holds_no_private_members() -> None:
    jwks = public_jwks([generate_signing_key("RS384"), generate_encryption_key()])
    for key in jwks["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()
        assert key["kid"]
    assert validate_public_jwks(jwks) == jwks


def test_validate_adds_missing_kids() -> None:
    key = generate_signing_key()
    bare = {k: v for k, v in public_jwk(key).items() if k != "kid"}
    assert validate_public_jwks({"keys": [bare]})["keys"][0]["kid"] == key.thumbprint()


@pytest.mark.parametrize(
    ("jwks", "message"),
    [
        ({}, "non-empty"),
        ({"keys": []}, "non-empty"),
        ([], "non-empty"),
        ({"keys": ["x"]}, "JSON object"),
        ({"keys": [generate_signing_key().as_dict(private=True)]}, "public keys only"),
        ({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}, "not a valid JWK"),
        ({"keys": [public_jwk(generate_encryption_key())]}, "no signing key"),
        ({"keys": [public_jwk(generate_signing_key())] * 2}, "duplicate kid"),
        ({"keys": [{**public_jwk(generate_signing_key()), "alg": "ES384"}]}, "does not fit"),
        ({"keys": [{**public_jwk(generate_signing_key("RS384")), "alg": "RS256"}]}, "RS384"),
        ({"keys": [{**public_jwk(generate_signing_key()), "use": "wrap"}]}, "'use'"),
    ],
)
def test_unusable_jwks_are_refused(jwks: object, message: str) -> None:
    with pytest.raises(InvalidJwks, match=message):
        validate_public_jwks(jwks)


def test_weak_or_symmetric_keys_are_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()  # noqa: S505 - the point
    numbers = weak.public_numbers()
    small = {"kty": "RSA", "n": _b64int(numbers.n), "e": _b64int(numbers.e)}
    with pytest.raises(InvalidJwks, match="weak"):
        validate_public_jwks({"keys": [small]})
    oct_key = OctKey.generate_key(256, private=True).as_dict(private=False)
    with pytest.raises(InvalidJwks):
        validate_public_jwks({"keys": [oct_key]})
