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
from joserfc.errors import ExceededSizeError, JoseError
from joserfc.jwe import JWERegistry
from joserfc.jwk import ECKey, Key, RSAKey
from joserfc.jws import JWSRegistry

from gateway.errors import BadRequest, Forbidden, PayloadTooLarge, Unauthorized
from profiles import fhir_json

# What a message may be signed and encrypted with (formats/messaging.md).
SIGNING_ALGORITHMS: tuple[str, ...] = ("ES256", "ES384", "PS256")
KEY_WRAP_ALGORITHMS: tuple[str, ...] = ("ECDH-ES+A256KW", "RSA-OAEP-256")
CONTENT_ENCRYPTION = "A256GCM"
MEDIA_TYPE = "application/jose"
# The JWS payload is the message Bundle as JSON.
PAYLOAD_TYPE = "application/fhir+json"

_EC_ALG = {"P-256": "ES256", "P-384": "ES384"}
# joserfc refuses a JWE ciphertext over 64 KiB and a JWS payload over 125 KB by default
# (``JWERegistry.max_ciphertext_length``, ``JWSRegistry.max_payload_length``): a MedCom
# CareCommunication with an attachment is larger. The envelope lifts both to the message
# limit the caller passes (BROBYGGER_MAX_MESSAGE_BYTES); the body is refused with a 413 before
# it gets here when it is larger, so no JOSE part can be larger than the limit either.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024


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


def jws_registry(algorithms: list[str], max_bytes: int = DEFAULT_MAX_BYTES) -> JWSRegistry:
    """A JWS registry for ``algorithms`` whose payload cap is ``max_bytes`` (not 125 KB)."""
    registry = JWSRegistry(algorithms=algorithms)
    registry.max_payload_length = max_bytes
    return registry


def jwe_registry(algorithms: list[str], max_bytes: int = DEFAULT_MAX_BYTES) -> JWERegistry:
    """A JWE registry for ``algorithms`` whose ciphertext cap is ``max_bytes`` (not 64 KiB)."""
    registry = JWERegistry(algorithms=algorithms)
    registry.max_ciphertext_length = max_bytes
    return registry


def kid_of(key: Key) -> str:
    return str(key.kid or key.thumbprint())


def canonical_json(bundle: dict[str, Any]) -> bytes:
    """The bytes that are signed: compact UTF-8 JSON (the signature covers exactly these)."""
    return fhir_json.dumps(bundle).encode("utf-8")


def sign(payload: bytes, key: Key) -> str:
    """A compact JWS over ``payload`` with ``kid`` = the key's registered kid."""
    alg = signing_algorithm(key)
    header = {"alg": alg, "kid": kid_of(key), "cty": PAYLOAD_TYPE}
    return jws.serialize_compact(header, payload, key, registry=jws_registry([alg], len(payload)))


def encrypt(signed: str, recipient: Key) -> str:
    """A compact JWE of the JWS, to ``recipient`` (a public encryption key)."""
    alg = key_wrap_algorithm(recipient)
    header = {"alg": alg, "enc": CONTENT_ENCRYPTION, "kid": kid_of(recipient), "cty": "JWT"}
    plaintext = signed.encode("ascii")
    registry = jwe_registry([alg, CONTENT_ENCRYPTION], 2 * len(plaintext) + 1024)
    return jwe.encrypt_compact(header, plaintext, recipient, registry=registry)


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


def _decrypt(token: str, header: dict[str, Any], keys: list[Key], max_bytes: int) -> str:
    """The JWE's plaintext (a compact JWS), telling a wrong key from a broken JWE.

    The JWE is parsed without a key first: malformed is a 400, too large a 413. Then only a
    JWE the gateway's keys cannot unwrap is "the wrong key" (401); a key that unwraps but a
    content that does not authenticate is a tampered JWE (401, said so).
    """
    registry = jwe_registry([str(header["alg"]), CONTENT_ENCRYPTION], max_bytes)
    try:
        jwe.extract_compact(token.encode("ascii"), registry=registry)  # type: ignore[attr-defined]
    except ExceededSizeError as exc:
        raise PayloadTooLarge(
            f"a part of the JWE is larger than the message limit of {max_bytes} bytes",
            expression="body",
        ) from exc
    except (JoseError, ValueError) as exc:
        raise NotJose("the JWE cannot be parsed (compact serialization)", expression="body") from (
            exc
        )
    kid = header.get("kid")
    candidates = [k for k in keys if kid is None or kid == kid_of(k)]
    if not candidates:
        raise EnvelopeRefused(
            f"the JWE is encrypted to key {kid!r}, which is not the receiver's encryption key "
            "(wrong key: fetch /.well-known/jwks.json again)",
            expression="kid",
        )
    wrong_key = True
    for key in candidates:
        try:
            result = jwe.decrypt_compact(token, key, registry=registry)
        except ExceededSizeError as exc:
            raise PayloadTooLarge(
                f"the JWE is larger than the message limit of {max_bytes} bytes",
                expression="body",
            ) from exc
        except (JoseError, ValueError) as exc:
            # joserfc says "Unwrap AES key failed" (ECDH-ES+A256KW) or "Decryption failed"
            # (RSA-OAEP) when the key does not open the content key; an AES-GCM tag that does
            # not verify (content changed) has no such text.
            text = str(exc).lower()
            if "unwrap" not in text and "decryption failed" not in text:
                wrong_key = False
            continue
        plaintext = result.plaintext or b""
        try:
            return plaintext.decode("ascii").strip()
        except UnicodeDecodeError as exc:
            raise NotJose("the JWE does not hold a compact JWS", expression="body") from exc
    if wrong_key:
        raise EnvelopeRefused(
            "the JWE cannot be decrypted with the receiver's key (wrong key)", expression="body"
        )
    raise EnvelopeRefused(
        "the JWE's content does not authenticate (tampered or truncated)", expression="body"
    )


def open_envelope(
    body: bytes, decryption_keys: list[Key], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> Opened:
    """Decrypt (when it is a JWE) and read the JWS inside, without verifying it yet.

    Raises ``NotJose`` (400) for anything that is not compact JOSE, ``PayloadTooLarge`` (413)
    for a body or JOSE part over ``max_bytes`` (checked before any decryption), and
    ``EnvelopeRefused`` (401) for a JWE none of ``decryption_keys`` opens or an algorithm we
    do not accept.
    """
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"the message is larger than {max_bytes} bytes", expression="body")
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
        signed = _decrypt(token, header, decryption_keys, max_bytes)
        if _parts(signed) != 3:
            raise NotJose("the JWE does not hold a compact JWS", expression="body")
    else:
        signed = token
    header = _b64_json_header(signed)
    try:
        payload = jws.extract_compact(
            signed.encode("ascii"), registry=jws_registry(list(SIGNING_ALGORITHMS), max_bytes)
        ).payload
    except ExceededSizeError as exc:
        raise PayloadTooLarge(
            f"a part of the JWS is larger than the message limit of {max_bytes} bytes",
            expression="body",
        ) from exc
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
        jws.deserialize_compact(
            opened.signed.encode("ascii"),
            key,
            registry=jws_registry([str(alg)], max(len(opened.signed), DEFAULT_MAX_BYTES)),
        )
    except (JoseError, ValueError) as exc:
        raise EnvelopeRefused(
            "the signature does not verify (tampered payload or wrong key)", expression="body"
        ) from exc


def read_signed(
    token: str, keys: dict[str, Key], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> dict[str, Any]:
    """Verify a compact JWS (e.g. the gateway's Acknowledgement) and return its JSON payload."""
    opened = open_envelope(token.encode("ascii"), [], max_bytes=max_bytes)
    verify(opened, keys, who="the signer")
    data = fhir_json.loads(opened.payload)
    if not isinstance(data, dict):
        raise BadRequest("the signed payload is not a JSON object")
    return data
