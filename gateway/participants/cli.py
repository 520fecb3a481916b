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

from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.citizens import lookup_cpr
from gateway.auth.keys import (
    SIGNING_ALGORITHMS,
    KeyUnavailable,
    generate_encryption_key,
    generate_signing_key,
    private_key_path,
    public_jwks,
    read_private_key,
    write_private_key,
)
from gateway.cli_output import fail, print_json, print_table, say
from gateway.errors import GatewayError
from gateway.participants.directory import KINDS, Participant, ParticipantDirectory
from gateway.participants.identifiers import ALIASES, parse_alias
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store

T = TypeVar("T")
participants_app = typer.Typer(no_args_is_help=True, help="The participant directory")
_SHORT = {system: alias for alias, system in reversed(list(ALIASES.items()))}


def register(app: typer.Typer) -> None:
    """Add ``participants`` and ``token`` to the root ``brobygger`` command."""
    app.add_typer(participants_app, name="participants")
    app.command("token")(token)


def _fail(message: str) -> typer.Exit:
    return fail(message, 1)


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
    name: Annotated[
        str,
        typer.Argument(help="its client_id: lower-case letters, digits and hyphens"),
    ],
    kind: Annotated[str, typer.Option(metavar="KIND", help="one of: " + ", ".join(KINDS))],
    identifier: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ALIAS=VALUE",
            help=f"an identifier, e.g. sor=123456789012; repeat for more; "
            f"aliases: {', '.join(ALIASES)}",
        ),
    ] = None,
    display: Annotated[
        str | None, typer.Option(metavar="TEXT", help="the organisation's name")
    ] = None,
    jwks: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="its public keys: a JWKS (or one JWK) JSON file"),
    ] = None,
    generate_key: Annotated[
        bool,
        typer.Option("--generate-key", help="make development keys in BROBYGGER_KEYS_DIR"),
    ] = False,
    alg: Annotated[
        str, typer.Option(metavar="ALG", help="algorithm of a generated signing key")
    ] = "ES256",
    endpoint: Annotated[
        str | None,
        typer.Option(metavar="URL", help="where messages are delivered (default: a mailbox)"),
    ] = None,
) -> None:
    """Register a participant (and its Organization) with its public keys.

    Give exactly one of --jwks FILE (the participant holds its keys) or --generate-key.
    """
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
        say(f"private key written to {path}", err=True)
    typer.echo(f"registered {added.name} ({added.kind}) as Organization/{added.organization_id}")


@participants_app.command("list")
def list_participants(
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON (public keys only) instead of a table")
    ] = False,
) -> None:
    """Show every registered participant.

    In a pipe: tab-separated lines, one participant per line (the first line names the columns).
    """

    async def work(
        _s: Settings, directory: ParticipantDirectory, _store: Store
    ) -> list[Participant]:
        return await directory.list()

    found = _with_directory(work)
    if as_json:
        print_json({"participants": [p.to_json() for p in found]})
        return
    rows = []
    for p in found:
        idents = ", ".join(
            f"{_SHORT.get(i['system'], i['system'])}={i['value']}" for i in p.identifiers
        )
        rows.append(
            (
                p.name,
                p.kind,
                p.display,
                idents or "-",
                str(len(p.jwks.get("keys", []))),
                p.endpoint or "mailbox",
            )
        )
    print_table(
        ("name", "kind", "display", "identifiers", "keys", "delivery"),
        rows,
        empty="no participants registered",
    )


@participants_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="a registered participant")],
) -> None:
    """One participant as JSON (public keys only)."""

    async def work(_s: Settings, directory: ParticipantDirectory, _store: Store) -> Participant:
        return await directory.get(name)

    typer.echo(json.dumps(_with_directory(work).to_json(), indent=2, ensure_ascii=False))


@participants_app.command("set-jwks")
def set_jwks(
    name: Annotated[str, typer.Argument(help="a registered participant")],
    jwks: Annotated[
        Path,
        typer.Option(metavar="FILE", help="a JWKS (or one JWK) JSON file replacing the keys"),
    ],
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
    name: Annotated[str, typer.Argument(help="a registered participant")],
    endpoint: Annotated[
        str | None,
        typer.Argument(help="http(s) URL messages are POSTed to; omit for --mailbox"),
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


def _no_key_file(name: str, settings: Settings) -> str:
    """Why ``token --as NAME`` has no key: NAME unknown, or its key is not in KEYS_DIR."""

    async def registered() -> bool:
        database = Database(settings.database_url)
        try:
            await database.migrate()
            return await ParticipantDirectory(database).find(name) is not None
        finally:
            await database.dispose()

    try:
        known: bool | None = asyncio.run(registered())
    except Exception:  # no directory here (a remote gateway): say what we know
        known = None
    if known is False:
        return f"{name!r} is not a registered participant (see: brobygger participants list)"
    return (
        f"no private key for {name!r} in {settings.keys_dir} "
        "(keys held by the participant: give --key-file FILE)"
    )


def token(
    as_: Annotated[
        str, typer.Option("--as", metavar="NAME", help="the participant (client_id) to act as")
    ],
    purpose: Annotated[
        str | None, typer.Option(metavar="CODE", help="purpose of use, e.g. TREAT")
    ] = None,
    patient: Annotated[
        str | None,
        typer.Option(
            metavar="Patient/ID",
            help="citizen portal only: the record it acts for; its CPR number is looked "
            "up in BROBYGGER_DATABASE_URL and signed into the assertion (unless --cpr)",
        ),
    ] = None,
    cpr: Annotated[
        str | None,
        typer.Option(metavar="NUMBER", help="citizen portal only: the citizen's CPR number"),
    ] = None,
    scope: Annotated[
        str | None,
        typer.Option(metavar="'SCOPE …'", help="scopes, space-separated (default: the kind's)"),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(metavar="URL", help="the gateway's base URL (default BROBYGGER_BASE_URL)"),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="the private key (default: BROBYGGER_KEYS_DIR/NAME.jwk.json)"
        ),
    ] = None,
) -> None:
    """Get an access token from the running gateway (SMART Backend Services).

    The token is the last line on stdout, so TOKEN=$(brobygger token --as NAME) works.
    """
    settings = Settings()
    base = (url or settings.base_url).rstrip("/")
    path = key_file or private_key_path(settings.keys_dir, as_)
    if key_file is None and not path.exists():
        raise _fail(_no_key_file(as_, settings))
    try:
        key = read_private_key(path)
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
    say(
        f"scope: {body.get('scope')}  purpose: {body.get('purpose', '-')}  "
        f"expires in: {body.get('expires_in')} s",
        err=True,
    )
    typer.echo(body["access_token"])
