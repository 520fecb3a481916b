"""Key material: participants' dev keys, the gateway's token-signing key and public JWKS.

Private keys live only in files under ``settings.keys_dir`` (mode 0600, never in the database
or the repository); the participant directory holds public JWKS. Every key's ``kid`` is its
RFC 7638 thumbprint, so a kid names exactly one key.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, Key, RSAKey, import_key

from gateway.errors import BadRequest, GatewayError
from gateway.settings import Settings

# What a client assertion may be signed with (SMART Backend Services: ES384 and RS384 are the
# required ones; ES256 is what our dev keys use).
SIGNING_ALGORITHMS: tuple[str, ...] = ("ES256", "ES384", "RS384")
ENCRYPTION_ALGORITHM = "ECDH-ES+A256KW"
GATEWAY_SIGNING_KEY = "gateway-signing"
ACCESS_TOKEN_ALGORITHM = "ES256"  # noqa: S105 - an algorithm name, not a secret

_CURVES = {"ES256": "P-256", "ES384": "P-384"}
_ALG_FOR_CURVE = {"P-256": "ES256", "P-384": "ES384"}
_MIN_RSA_BITS = 2048
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class KeyUnavailable(GatewayError):
    """A key file is missing, unreadable or refused (e.g. generating keys in production)."""


class InvalidJwks(BadRequest):
    """A JWKS offered for registration is not a usable public key set."""


# --- generating -----------------------------------------------------------------------------


def _with_kid(key: Key, params: dict[str, Any]) -> Key:
    data = {**key.as_dict(private=key.is_private), **params, "kid": key.thumbprint()}
    return import_key(data)


def generate_signing_key(alg: str = "ES256") -> Key:
    """A new private signing key for ``alg`` (ES256, ES384 or RS384), kid = its thumbprint."""
    if alg in _CURVES:
        key: Key = ECKey.generate_key(_CURVES[alg], private=True)
    elif alg == "RS384":
        key = RSAKey.generate_key(3072, private=True)
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    return _with_kid(key, {"alg": alg, "use": "sig"})


def generate_encryption_key() -> Key:
    """A new private P-256 key for ECDH-ES+A256KW (messages encrypted to a participant)."""
    key = ECKey.generate_key("P-256", private=True)
    return _with_kid(key, {"alg": ENCRYPTION_ALGORITHM, "use": "enc"})


# --- files ----------------------------------------------------------------------------------


def private_key_path(keys_dir: Path, name: str, *, use: str = "sig") -> Path:
    """``<keys_dir>/<name>.jwk.json`` (signing) or ``<name>.enc.jwk.json`` (encryption)."""
    suffix = ".jwk.json" if use == "sig" else f".{use}.jwk.json"
    return keys_dir / f"{name}{suffix}"


def write_private_key(path: Path, key: Key, *, replace: bool = False) -> None:
    """Write a private JWK with mode 0600, atomically.

    With ``replace=False`` an existing file wins (raises FileExistsError), which makes
    "generate on first use" safe when several gateway processes start at once.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    payload = json.dumps(key.as_dict(private=True), indent=2, sort_keys=True) + "\n"
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the file appeared meanwhile
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def read_private_key(path: Path) -> Key:
    """Load a private JWK written by :func:`write_private_key` (or by hand)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        key = import_key(data)
    except FileNotFoundError as exc:
        raise KeyUnavailable(f"key file {path} does not exist") from exc
    except (OSError, ValueError, JoseError) as exc:
        raise KeyUnavailable(f"key file {path} is not a readable JWK") from exc
    if not key.is_private:
        raise KeyUnavailable(f"key file {path} holds no private key")
    key.ensure_kid()
    return key


def load_or_create_key(path: Path, *, use: str = "sig", alg: str = "ES256") -> Key:
    """The key in ``path``; generated and written first if the file does not exist."""
    if not path.exists():
        key = generate_signing_key(alg) if use == "sig" else generate_encryption_key()
        with contextlib.suppress(FileExistsError):
            write_private_key(path, key)
    return read_private_key(path)


def load_gateway_signing_key(settings: Settings) -> Key:
    """The gateway's access-token signing key; generated on first use outside production."""
    path = private_key_path(settings.keys_dir, GATEWAY_SIGNING_KEY)
    if settings.environment == "production" and not path.exists():
        raise KeyUnavailable(
            f"production needs the gateway signing key at {path}; "
            "generate it with the key ceremony, the gateway will not"
        )
    key = load_or_create_key(path, alg=ACCESS_TOKEN_ALGORITHM)
    if not isinstance(key, ECKey) or key.curve_name != "P-256":
        raise KeyUnavailable(f"the gateway signing key at {path} must be an EC P-256 key")
    return key


# --- public key sets ------------------------------------------------------------------------


def public_jwk(key: Key) -> dict[str, Any]:
    data = dict(key.as_dict(private=False))
    data.setdefault("kid", key.thumbprint())
    return data


def public_jwks(keys: Iterable[Key]) -> dict[str, Any]:
    return {"keys": [public_jwk(k) for k in keys]}


def validate_public_jwks(jwks: Any) -> dict[str, Any]:
    """Check a JWKS for registration and return it normalised (every key with a kid).

    Refused: private members, symmetric keys, curves and RSA sizes we do not accept, an
    ``alg`` that does not fit the key, duplicate kids, no signing key at all.
    """
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise InvalidJwks("a JWKS is an object with a non-empty 'keys' list", expression="keys")
    normalised: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, entry in enumerate(jwks["keys"]):
        where = f"keys[{index}]"
        if not isinstance(entry, dict):
            raise InvalidJwks("each key is a JSON object", expression=where)
        if _PRIVATE_MEMBERS & entry.keys():
            raise InvalidJwks(
                "a JWKS for registration must hold public keys only", expression=where
            )
        if entry.get("use", "sig") not in ("sig", "enc"):
            raise InvalidJwks("'use' must be 'sig' or 'enc'", expression=where)
        try:
            key = _import_strict(entry)
        except SecurityWarning as exc:
            raise InvalidJwks(f"key refused as too weak ({exc})", expression=where) from exc
        except (ValueError, TypeError, JoseError) as exc:
            raise InvalidJwks("not a valid JWK", expression=where) from exc
        _check_key_strength(key, entry, where)
        data = public_jwk(key)
        kid = str(data["kid"])
        if kid in seen:
            raise InvalidJwks(f"duplicate kid {kid!r}", expression=where)
        seen.add(kid)
        normalised.append(data)
    if not any(k.get("use", "sig") == "sig" for k in normalised):
        raise InvalidJwks("the JWKS has no signing key", expression="keys")
    return {"keys": normalised}


def _check_key_strength(key: Key, entry: dict[str, Any], where: str) -> None:
    alg = entry.get("alg")
    use = entry.get("use", "sig")
    if isinstance(key, ECKey):
        if key.curve_name not in _ALG_FOR_CURVE:
            raise InvalidJwks("EC keys must be on P-256 or P-384", expression=where)
        if use == "sig" and alg is not None and alg != _ALG_FOR_CURVE[key.curve_name]:
            raise InvalidJwks(f"alg {alg!r} does not fit a {key.curve_name} key", expression=where)
    elif isinstance(key, RSAKey):
        if key.public_key.key_size < _MIN_RSA_BITS:
            raise InvalidJwks(f"RSA keys need at least {_MIN_RSA_BITS} bits", expression=where)
        if use == "sig" and alg is not None and alg != "RS384":
            raise InvalidJwks("RSA signing keys must use RS384", expression=where)
    else:
        raise InvalidJwks("only EC (P-256, P-384) and RSA keys are accepted", expression=where)


def _import_strict(entry: dict[str, Any]) -> Key:
    """import_key, with joserfc's SecurityWarning (e.g. RSA < 2048 bits) raised as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", SecurityWarning)
        return import_key(entry)


def signing_keys(jwks: dict[str, Any]) -> dict[str, Key]:
    """kid → public key, for the keys of a registered JWKS that may sign assertions."""
    found: dict[str, Key] = {}
    for entry in jwks.get("keys", []):
        if entry.get("use", "sig") != "sig":
            continue
        try:
            key = _import_strict(entry)
        except (ValueError, TypeError, JoseError, SecurityWarning):
            continue  # validated at registration; a broken or weak entry signs nothing
        kid = entry.get("kid") or key.thumbprint()
        found[str(kid)] = key
    return found


def algorithm_fits(key: Key, alg: str) -> bool:
    """True when ``alg`` is one we accept and is the algorithm this key is for."""
    if alg not in SIGNING_ALGORITHMS:
        return False
    if isinstance(key, ECKey):
        return _ALG_FOR_CURVE.get(key.curve_name) == alg
    return isinstance(key, RSAKey) and alg == "RS384"
