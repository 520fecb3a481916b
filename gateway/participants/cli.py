"""``brobygger participants …`` (directly against BROBYGGER_DATABASE_URL) and ``brobygger token``.

``token`` is the one command that goes over HTTP: it signs a client assertion with the
participant's dev key from ``keys_dir`` and asks the running gateway's token endpoint, so it
exercises exactly what an external client does. The access token is the last line of stdout;
everything else goes to stderr, so ``TOKEN=$(brobygger token --as …)`` works.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from joserfc.jwk import Key
from rich.console import Console
from rich.table import Table

from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.citizens import lookup_cpr
from gateway.auth.keys import (
    SIGNING_ALGORITHMS,
    KeyUnavailable,
    generate_encryption_key,
    generate_signing_key,
    private_key_path,
    public_jwk,
    public_jwks,
    read_private_key,
    write_private_key,
)
from gateway.errors import GatewayError
from gateway.participants.directory import KINDS, Participant, ParticipantDirectory
from gateway.participants.identifiers import ALIASES, parse_alias
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store

T = TypeVar("T")
participants_app = typer.Typer(no_args_is_help=True, help="The participant directory")
stderr = Console(stderr=True)
_SHORT = {system: alias for alias, system in reversed(list(ALIASES.items()))}


def register(app: typer.Typer) -> None:
    """Add ``participants`` and ``token`` to the root ``brobygger`` command."""
    app.add_typer(participants_app, name="participants")
    app.command("token")(token)


def _fail(message: str) -> typer.Exit:
    stderr.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


def _with_directory(
    work: Callable[[Settings, ParticipantDirectory, Store], Awaitable[T]],
) -> T:
    settings = Settings()

    async def run() -> T:
        database = Database(settings.database_url)
        try:
            await database.migrate()
            store = Store(database, fhir_base=settings.fhir_base)
            return await work(settings, ParticipantDirectory(database), store)
        finally:
            await database.dispose()

    try:
        return asyncio.run(run())
    except GatewayError as exc:
        raise _fail(str(exc)) from exc


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot read JSON from {path}") from exc


def _as_jwks(data: Any) -> dict[str, Any]:
    """A JWKS file, or a single public JWK file, as a JWKS."""
    if isinstance(data, dict) and "keys" not in data and "kty" in data:
        return {"keys": [data]}
    if isinstance(data, dict):
        return data
    raise _fail("the JWKS file must hold a JSON object")


@participants_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="client_id: lower-case letters, digits, hyphens")],
    kind: Annotated[str, typer.Option(help=" | ".join(KINDS))],
    identifier: Annotated[
        list[str] | None,
        typer.Option(help=f"ALIAS=VALUE, repeatable; aliases: {', '.join(ALIASES)}"),
    ] = None,
    display: Annotated[str | None, typer.Option(help="organisation name")] = None,
    jwks: Annotated[Path | None, typer.Option(help="public JWKS (or JWK) file")] = None,
    generate_key: Annotated[
        bool, typer.Option("--generate-key", help="make dev keys in BROBYGGER_KEYS_DIR")
    ] = False,
    alg: Annotated[str, typer.Option(help="algorithm of a generated signing key")] = "ES256",
    endpoint: Annotated[str | None, typer.Option(help="HTTPS endpoint for deliveries")] = None,
) -> None:
    """Register a participant (and its Organization) with its public keys."""
    if (jwks is None) == (not generate_key):
        raise _fail("give exactly one of --jwks FILE or --generate-key")
    if alg not in SIGNING_ALGORITHMS:
        raise _fail(f"--alg must be one of {', '.join(SIGNING_ALGORITHMS)}")
    try:
        identifiers = [parse_alias(text) for text in identifier or []]
    except GatewayError as exc:
        raise _fail(str(exc)) from exc
    settings = Settings()
    new_keys: list[Key] = []
    paths: list[Path] = []
    if generate_key:
        paths = [private_key_path(settings.keys_dir, name, use=u) for u in ("sig", "enc")]
        if any(p.exists() for p in paths):
            raise _fail(f"key files for {name!r} already exist in {settings.keys_dir}")
        new_keys = [generate_signing_key(alg), generate_encryption_key()]
        key_set = public_jwks(new_keys)
    else:
        assert jwks is not None  # noqa: S101 - checked above
        key_set = _as_jwks(_read_json(jwks))
    participant = Participant(
        name=name,
        kind=kind,
        display=display or name,
        identifiers=identifiers,
        jwks=key_set,
        endpoint=endpoint,
        mailbox=endpoint is None,
    )

    async def work(_s: Settings, directory: ParticipantDirectory, store: Store) -> Participant:
        return await directory.add(participant, store=store)

    added = _with_directory(work)
    # Keys are written only once the registration is committed.
    for key, path in zip(new_keys, paths, strict=True):
        write_private_key(path, key)
        stderr.print(f"private key written to {path}", highlight=False)
    typer.echo(f"registered {added.name} ({added.kind}) as Organization/{added.organization_id}")


@participants_app.command("list")
def list_participants() -> None:
    """Show every registered participant."""

    async def work(
        _s: Settings, directory: ParticipantDirectory, _store: Store
    ) -> list[Participant]:
        return await directory.list()

    table = Table()
    for column in ("name", "kind", "display", "identifiers", "keys", "delivery"):
        table.add_column(column, overflow="fold")  # wrap, never cut an identifier short
    for p in _with_directory(work):
        idents = ", ".join(
            f"{_SHORT.get(i['system'], i['system'])}={i['value']}" for i in p.identifiers
        )
        table.add_row(
            p.name,
            p.kind,
            p.display,
            idents or "-",
            str(len(p.jwks.get("keys", []))),
            p.endpoint or "mailbox",
        )
    Console().print(table)


@participants_app.command("show")
def show(name: str) -> None:
    """One participant as JSON (public keys only)."""

    async def work(_s: Settings, directory: ParticipantDirectory, _store: Store) -> Participant:
        return await directory.get(name)

    typer.echo(json.dumps(_with_directory(work).to_json(), indent=2, ensure_ascii=False))


@participants_app.command("rotate-key")
def rotate_key(
    name: str,
    alg: Annotated[str, typer.Option(help="algorithm of the new signing key")] = "ES256",
    keep: Annotated[int, typer.Option(help="older signing keys to keep in the JWKS")] = 1,
) -> None:
    """New dev signing key (new kid) in BROBYGGER_KEYS_DIR; the old public key stays registered.

    Assertions signed with the old key a moment ago keep verifying for their lifetime; the
    next rotation drops keys beyond ``--keep``. Prints the new kid.
    """
    if alg not in SIGNING_ALGORITHMS:
        raise _fail(f"--alg must be one of {', '.join(SIGNING_ALGORITHMS)}")
    key = generate_signing_key(alg)

    async def work(settings: Settings, directory: ParticipantDirectory, _store: Store) -> Path:
        await directory.add_signing_key(name, public_jwk(key), keep_previous=keep)
        return private_key_path(settings.keys_dir, name)

    path = _with_directory(work)
    write_private_key(path, key, replace=True)
    stderr.print(f"new private key written to {path}", highlight=False)
    typer.echo(key.kid)


@participants_app.command("set-jwks")
def set_jwks(
    name: str,
    jwks: Annotated[Path, typer.Option(help="public JWKS (or JWK) file replacing the keys")],
) -> None:
    """Replace a participant's registered public keys (for keys held by the participant)."""
    key_set = _as_jwks(_read_json(jwks))

    async def work(_s: Settings, directory: ParticipantDirectory, _store: Store) -> Participant:
        return await directory.set_jwks(name, key_set)

    updated = _with_directory(work)
    kids = ", ".join(str(k.get("kid")) for k in updated.jwks["keys"])
    typer.echo(f"{updated.name}: keys {kids}")


@participants_app.command("set-endpoint")
def set_endpoint(
    name: str,
    endpoint: Annotated[
        str | None, typer.Argument(help="http(s) URL messages are POSTed to; omit for --mailbox")
    ] = None,
    mailbox: Annotated[
        bool, typer.Option(help="no endpoint: the participant polls GET /messages")
    ] = False,
) -> None:
    """Set where messages to a participant are delivered: its endpoint or its mailbox."""
    if (endpoint is None) == (not mailbox):
        raise _fail("give either an endpoint URL or --mailbox")

    async def work(_s: Settings, directory: ParticipantDirectory, _store: Store) -> Participant:
        return await directory.set_endpoint(name, None if mailbox else endpoint)

    updated = _with_directory(work)
    typer.echo(f"{updated.name}: {updated.endpoint or 'mailbox'}")


@participants_app.command("set-transport")
def set_transport(
    name: str,
    transport: Annotated[
        str,
        typer.Argument(
            help="jose: a JWE holding a JWS (the default); plain: a FHIR message Bundle "
            "(application/fhir+json or +xml) over the participant's authenticated TLS "
            "connection, as MedCom systems send"
        ),
    ],
) -> None:
    """Set how a participant sends messages to POST /fhir/$process-message."""

    async def work(_s: Settings, directory: ParticipantDirectory, _store: Store) -> Participant:
        return await directory.set_transport(name, transport)

    updated = _with_directory(work)
    typer.echo(f"{updated.name}: transport {updated.transport}")


def _http_client() -> httpx.Client:
    """The HTTP client ``token`` uses (a seam for tests)."""
    return httpx.Client(timeout=10.0)


def _token_endpoint(client: httpx.Client, base: str) -> str:
    """The token endpoint from SMART discovery; ``<base>/auth/token`` if discovery fails."""
    fallback = base + "/auth/token"
    try:
        response = client.get(base + "/.well-known/smart-configuration")
        endpoint = response.json().get("token_endpoint") if response.is_success else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return fallback
    return endpoint if isinstance(endpoint, str) and endpoint else fallback


def token(
    as_: Annotated[str, typer.Option("--as", help="participant (client_id) to act as")],
    purpose: Annotated[str | None, typer.Option(help="purpose of use code")] = None,
    patient: Annotated[
        str | None,
        typer.Option(
            help="citizen portal only: the Patient/<id> it acts for; its CPR number is looked "
            "up in BROBYGGER_DATABASE_URL and signed into the assertion (unless --cpr)"
        ),
    ] = None,
    cpr: Annotated[
        str | None,
        typer.Option(help="citizen portal only: the logged-in citizen's CPR number"),
    ] = None,
    scope: Annotated[str | None, typer.Option(help="space-separated scopes")] = None,
    url: Annotated[
        str | None, typer.Option(help="gateway base URL (default BROBYGGER_BASE_URL)")
    ] = None,
    key_file: Annotated[
        Path | None, typer.Option(help="private JWK (default KEYS_DIR/<NAME>.jwk.json)")
    ] = None,
) -> None:
    """Get an access token from the running gateway (SMART Backend Services)."""
    settings = Settings()
    base = (url or settings.base_url).rstrip("/")
    try:
        key = read_private_key(key_file or private_key_path(settings.keys_dir, as_))
    except KeyUnavailable as exc:
        raise _fail(str(exc)) from exc
    form = {"grant_type": "client_credentials", "client_assertion_type": CLIENT_ASSERTION_TYPE}
    if scope:
        form["scope"] = scope
    if purpose:
        form["purpose"] = purpose
    if patient:
        form["patient"] = patient
        if cpr is None:  # operator side: the demo portal vouches for that Patient's citizen
            try:
                cpr = lookup_cpr(settings.database_url, patient)
            except GatewayError as exc:
                raise _fail(str(exc)) from exc
    try:
        with _http_client() as client:
            endpoint = _token_endpoint(client, base)
            form["client_assertion"] = make_client_assertion(
                key, as_, endpoint, lifetime=300, cpr=cpr
            )
            response = client.post(endpoint, data=form)
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach the gateway at {base}: {exc.__class__.__name__}") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not response.is_success or not isinstance(body, dict) or "access_token" not in body:
        error = body.get("error", f"HTTP {response.status_code}") if isinstance(body, dict) else ""
        description = body.get("error_description", "") if isinstance(body, dict) else ""
        raise _fail(f"{error}: {description}".rstrip(": "))
    stderr.print(
        f"scope: {body.get('scope')}  purpose: {body.get('purpose', '-')}  "
        f"expires in: {body.get('expires_in')} s",
        highlight=False,
    )
    typer.echo(body["access_token"])
