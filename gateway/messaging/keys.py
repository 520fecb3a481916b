"""Keys for messaging: the gateway's own (sign acknowledgements and forwarded messages,
decrypt what is sent to it) and the participants' registered public keys.

The gateway signs with its existing ES256 signing key (``gateway-signing.jwk.json``, the one
that signs access tokens) and decrypts with ``gateway-messaging.enc.jwk.json``; both public
keys are published at ``GET /.well-known/jwks.json``.
"""

from __future__ import annotations

from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import Key, import_key

from gateway.auth.keys import (
    KeyUnavailable,
    load_gateway_signing_key,
    load_or_create_key,
    private_key_path,
    public_jwk,
)
from gateway.participants.directory import Participant
from gateway.settings import Settings

GATEWAY_ENCRYPTION_KEY = "gateway-messaging"


def gateway_signing_key(settings: Settings) -> Key:
    return load_gateway_signing_key(settings)


def gateway_encryption_keys(settings: Settings) -> list[Key]:
    """The gateway's private decryption keys (current first; generated outside production)."""
    path = private_key_path(settings.keys_dir, GATEWAY_ENCRYPTION_KEY, use="enc")
    if settings.environment == "production" and not path.exists():
        raise KeyUnavailable(f"production needs the gateway's message decryption key at {path}")
    return [load_or_create_key(path, use="enc")]


def gateway_jwks(settings: Settings) -> dict[str, Any]:
    """The gateway's public keys: the signing key and the message encryption key."""
    keys = [public_jwk(gateway_signing_key(settings))]
    keys += [public_jwk(k) for k in gateway_encryption_keys(settings)]
    return {"keys": keys}


def _imported(entry: dict[str, Any]) -> Key | None:
    try:
        return import_key(entry)
    except (ValueError, TypeError, JoseError):
        return None


def keys_by_kid(jwks: dict[str, Any], use: str) -> dict[str, Key]:
    """kid → public key for the keys of ``jwks`` with this ``use`` (sig or enc)."""
    found: dict[str, Key] = {}
    for entry in jwks.get("keys", []):
        if entry.get("use", "sig") != use or entry.get("retired"):
            continue
        key = _imported(entry)
        if key is not None:
            found[str(entry.get("kid") or key.thumbprint())] = key
    return found


def signing_keys(participant: Participant) -> dict[str, Key]:
    """The participant's registered signing keys (rotated-out keys verify until retired)."""
    return keys_by_kid(participant.jwks, "sig")


def encryption_key(participant: Participant) -> Key | None:
    """The participant's current encryption key: the first ``use: enc`` key registered."""
    keys = list(keys_by_kid(participant.jwks, "enc").values())
    return keys[0] if keys else None
