"""The message envelope: a compact JWS (the sender's signature over the Bundle JSON) inside a
compact JWE (encrypted to the receiver's key), as ``formats/messaging.md`` specifies.

Only joserfc does cryptography here; this module chooses algorithms, names keys by ``kid`` and
turns every JOSE failure into a ``GatewayError`` naming what was wrong (never a stack trace).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from joserfc import jwe, jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, RSAKey

from gateway.errors import BadRequest, Forbidden, Unauthorized

# What a message may be signed and encrypted with (formats/messaging.md).
SIGNING_ALGORITHMS: tuple[str, ...] = ("ES256", "ES384", "PS256")
KEY_WRAP_ALGORITHMS: tuple[str, ...] = ("ECDH-ES+A256KW", "RSA-OAEP-256")
CONTENT_ENCRYPTION = "A256GCM"
MEDIA_TYPE = "application/jose"
# The JWS payload is the message Bundle as JSON.
PAYLOAD_TYPE = "application/fhir+json"

_EC_ALG = {"P-256": "ES256", "P-384": "ES384"}


class NotJose(BadRequest):
    """The body is not a compact JWS or JWE."""


class EnvelopeRefused(Unauthorized):
    """The envelope cannot be opened or its signature does not verify."""


class WrongSigner(Forbidden):
    """The signature is good but by someone who may not send this message."""


@dataclass(frozen=True, slots=True)
class Opened:
    """What came out of an envelope: the JWS as sent, its header and (unverified) payload."""

    signed: str
    header: dict[str, Any]
    payload: bytes
    encrypted: bool


def signing_algorithm(key: Key) -> str:
    """The JWS algorithm for a signing key: ES256/ES384 by curve, PS256 for RSA."""
    if isinstance(key, ECKey) and key.curve_name in _EC_ALG:
        return _EC_ALG[key.curve_name]
    if isinstance(key, RSAKey):
        return "PS256"
    raise ValueError("message signing keys are EC P-256/P-384 or RSA")


def key_wrap_algorithm(key: Key) -> str:
    if isinstance(key, ECKey):
        return "ECDH-ES+A256KW"
    if isinstance(key, RSAKey):
        return "RSA-OAEP-256"
    raise ValueError("message encryption keys are EC or RSA")


def kid_of(key: Key) -> str:
    return str(key.kid or key.thumbprint())


def canonical_json(bundle: dict[str, Any]) -> bytes:
    """The bytes that are signed: compact UTF-8 JSON (the signature covers exactly these)."""
    return json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(payload: bytes, key: Key) -> str:
    """A compact JWS over ``payload`` with ``kid`` = the key's registered kid."""
    alg = signing_algorithm(key)
    header = {"alg": alg, "kid": kid_of(key), "cty": PAYLOAD_TYPE}
    return jws.serialize_compact(header, payload, key, algorithms=[alg])


def encrypt(signed: str, recipient: Key) -> str:
    """A compact JWE of the JWS, to ``recipient`` (a public encryption key)."""
    alg = key_wrap_algorithm(recipient)
    header = {"alg": alg, "enc": CONTENT_ENCRYPTION, "kid": kid_of(recipient), "cty": "JWT"}
    return jwe.encrypt_compact(
        header, signed.encode("ascii"), recipient, algorithms=[alg, CONTENT_ENCRYPTION]
    )


def seal(bundle: dict[str, Any] | bytes, signing_key: Key, recipient: Key | None) -> str:
    """Sign the Bundle and, unless ``recipient`` is None (plain JWS), encrypt it."""
    payload = bundle if isinstance(bundle, bytes) else canonical_json(bundle)
    signed = sign(payload, signing_key)
    return signed if recipient is None else encrypt(signed, recipient)


def _parts(token: str) -> int:
    return token.count(".") + 1


def _b64_json_header(token: str) -> dict[str, Any]:
    import base64

    head = token.split(".", 1)[0]
    try:
        raw = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
        header = json.loads(raw)
    except RecursionError as exc:
        raise NotJose("the JOSE header nests too deep", expression="body") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotJose("the JOSE header is not base64url JSON", expression="body") from exc
    if not isinstance(header, dict):
        raise NotJose("the JOSE header is not a JSON object", expression="body")
    return header


def open_envelope(body: bytes, decryption_keys: list[Key]) -> Opened:
    """Decrypt (when it is a JWE) and read the JWS inside, without verifying it yet.

    Raises ``NotJose`` (400) for anything that is not compact JOSE and ``EnvelopeRefused``
    (401) for a JWE none of ``decryption_keys`` opens or an algorithm we do not accept.
    """
    try:
        token = body.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise NotJose("a JOSE compact serialization is ASCII", expression="body") from exc
    parts = _parts(token)
    if parts not in (3, 5) or not token:
        raise NotJose(
            "the body is neither a compact JWS (3 parts) nor a compact JWE (5 parts)",
            expression="body",
        )
    encrypted = parts == 5
    if encrypted:
        header = _b64_json_header(token)
        if header.get("alg") not in KEY_WRAP_ALGORITHMS:
            raise EnvelopeRefused(
                f"JWE alg must be one of {', '.join(KEY_WRAP_ALGORITHMS)}", expression="alg"
            )
        if header.get("enc") != CONTENT_ENCRYPTION:
            raise EnvelopeRefused(f"JWE enc must be {CONTENT_ENCRYPTION}", expression="enc")
        candidates = [k for k in decryption_keys if header.get("kid") in (None, kid_of(k))]
        signed: str | None = None
        for key in candidates or decryption_keys:
            try:
                result = jwe.decrypt_compact(
                    token, key, algorithms=[str(header["alg"]), CONTENT_ENCRYPTION]
                )
            except (JoseError, ValueError):
                continue
            plaintext = result.plaintext or b""
            try:
                signed = plaintext.decode("ascii").strip()
            except UnicodeDecodeError as exc:
                raise NotJose("the JWE does not hold a compact JWS", expression="body") from exc
            break
        if signed is None:
            raise EnvelopeRefused(
                "the JWE cannot be decrypted with the receiver's key (wrong key or tampered)",
                expression="body",
            )
        if _parts(signed) != 3:
            raise NotJose("the JWE does not hold a compact JWS", expression="body")
    else:
        signed = token
    header = _b64_json_header(signed)
    try:
        payload = jws.extract_compact(signed.encode("ascii")).payload
    except (JoseError, ValueError) as exc:
        raise NotJose("the JWS cannot be read", expression="body") from exc
    return Opened(signed=signed, header=header, payload=payload, encrypted=encrypted)


def verify(opened: Opened, keys: dict[str, Key], *, who: str) -> None:
    """Verify the JWS with the key its ``kid`` names among ``keys`` (``who``'s keys).

    A kid not registered to ``who`` is a ``WrongSigner`` (403); a bad signature (tampered
    payload, wrong key) an ``EnvelopeRefused`` (401).
    """
    alg = opened.header.get("alg")
    if alg not in SIGNING_ALGORITHMS:
        raise EnvelopeRefused(
            f"JWS alg must be one of {', '.join(SIGNING_ALGORITHMS)}", expression="alg"
        )
    kid = opened.header.get("kid")
    key = keys.get(str(kid)) if kid is not None else None
    if key is None:
        raise WrongSigner(
            f"the JWS key {kid!r} is not a registered signing key of {who}", expression="kid"
        )
    try:
        if signing_algorithm(key) != alg:
            raise EnvelopeRefused(f"alg {alg} does not fit key {kid}", expression="alg")
    except ValueError as exc:
        raise EnvelopeRefused(f"key {kid} cannot sign messages", expression="kid") from exc
    try:
        jws.deserialize_compact(opened.signed.encode("ascii"), key, algorithms=[str(alg)])
    except (JoseError, ValueError) as exc:
        raise EnvelopeRefused(
            "the signature does not verify (tampered payload or wrong key)", expression="body"
        ) from exc


def read_signed(token: str, keys: dict[str, Key]) -> dict[str, Any]:
    """Verify a compact JWS (e.g. the gateway's Acknowledgement) and return its JSON payload."""
    opened = open_envelope(token.encode("ascii"), [])
    verify(opened, keys, who="the signer")
    data = json.loads(opened.payload)
    if not isinstance(data, dict):
        raise BadRequest("the signed payload is not a JSON object")
    return data
