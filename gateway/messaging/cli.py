"""``brobygger send``, ``messages``, ``deliver`` and ``keys participant``.

``send`` is a client of the running gateway and goes over HTTP only, as a participant's system
would: it reads the gateway's keys from ``/.well-known/jwks.json``, gets an access token with
the participant's key file, builds the message, signs it with that key, encrypts it to the
gateway and posts it to ``/fhir/$process-message``. Its exit code is the acknowledgement's:
0 ``ok``, 1 ``fatal-error`` (or any refusal), 2 ``transient-error`` after the retries.

``messages``, ``deliver`` and ``keys participant`` are operator commands and work on
BROBYGGER_DATABASE_URL directly, like ``brobygger audit``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from joserfc.jwk import Key
from sqlalchemy import or_, select

from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import (
    KeyUnavailable,
    generate_encryption_key,
    generate_signing_key,
    private_key_path,
    public_jwk,
    read_private_key,
    write_private_key,
)
from gateway.cli_output import fail, print_json, print_table, say
from gateway.data import rewrite_references
from gateway.errors import GatewayError
from gateway.messaging import acks, envelope, message, records
from gateway.messaging.keys import keys_by_kid
from gateway.participants.cli import _token_endpoint
from gateway.participants.directory import KIND_SYSTEM, Participant, ParticipantDirectory
from gateway.search.dates import format_instant
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.schema import deliveries, messages
from mappings import MappingError, detect_format, gp_statement, jobcentre_case, rehab_plan
from mappings._xml import parse_xml

T = TypeVar("T")

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_TRANSIENT = 2
DEFAULT_SCOPE = "system/*.read system/*.write"
MESSAGE_SIGNING_ALGORITHMS = ("ES256", "ES384")
# Legacy document format → message event (gp-statement splits into request and statement).
_FORMAT_EVENTS = {rehab_plan.FORMAT: message.REHAB_PLAN, jobcentre_case.FORMAT: message.CASE}
# FHIR content → event, by the first resource type found in this order (the focus).
_TYPE_EVENTS: tuple[tuple[str, str], ...] = (
    ("Communication", message.CARE_COMMUNICATION),
    ("ServiceRequest", message.STATEMENT_REQUEST),
    ("Appointment", message.MEETING_INVITATION),
    ("Consent", message.CONSENT_UPDATE),
    ("QuestionnaireResponse", message.STATEMENT),
    ("CarePlan", message.REHAB_PLAN),
    ("EpisodeOfCare", message.CASE),
)
_RETRY_STATUSES = frozenset({429, 502, 503, 504})


def register(app: typer.Typer) -> None:
    """Add ``send``, ``messages`` and ``deliver``, and ``participant`` to the ``keys`` group.

    Call it after the root app's ``keys`` group exists.
    """
    app.command("send")(send)
    app.command("messages")(list_messages)
    app.command("deliver")(deliver)
    keys_group = next((g for g in app.registered_groups if g.name == "keys"), None)
    if keys_group is None or keys_group.typer_instance is None:
        raise RuntimeError("register the 'keys' command group before the messaging commands")
    keys_group.typer_instance.command("participant")(participant_keys)


def _fail(text: str, code: int = EXIT_FATAL) -> typer.Exit:
    return fail(text, code)  # literally: refusals carry XPaths like [/Emessage/...]


# --- send ------------------------------------------------------------------------------------


class _Retryable(Exception):
    """Worth another try later: transient-error, 5xx, connection trouble."""


class _Refused(Exception):
    """Not worth another try (exit 1)."""


def _http_client() -> httpx.Client:
    """The HTTP client ``send`` uses (a seam for tests)."""
    return httpx.Client(timeout=30.0)


def _sleep(seconds: float) -> None:
    """Back-off between attempts (a seam for tests: they never wait)."""
    time.sleep(seconds)


def _backoff(attempt: int, base: float) -> float:
    """base · 2^(attempt-1), plus up to 50 % jitter so retrying senders spread out."""
    delay = base * 2 ** (attempt - 1)
    return float(delay + delay * secrets.randbelow(500) / 1000)


def event_of_document(document: bytes) -> str:
    """The message event a legacy XML document travels as (``MappingError`` if unknown)."""
    fmt = detect_format(document)
    if fmt in _FORMAT_EVENTS:
        return _FORMAT_EVENTS[fmt]
    form = gp_statement.FORMS.get(str(parse_xml(document).get("kode") or ""))
    if form is not None and form.requests is not None:
        return message.STATEMENT_REQUEST
    return message.STATEMENT


def content_of_bundle(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources of a collection (or transaction) Bundle as message content.

    Entries known by ``urn:uuid:`` fullUrls get that uuid as id and their references become
    ``Type/id``, which still resolve once the resources sit in the message Bundle.
    """
    targets: dict[str, str] = {}
    resources: list[dict[str, Any]] = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            continue
        resource = dict(resource)
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str) and full_url.startswith("urn:uuid:"):
            resource.setdefault("id", full_url.removeprefix("urn:uuid:"))
        if isinstance(full_url, str) and isinstance(resource.get("id"), str):
            targets[full_url] = f"{resource['resourceType']}/{resource['id']}"
        resources.append(resource)
    return [rewrite_references(r, targets) for r in resources]


def event_of_content(content: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]] | None:
    """(event, focus) for FHIR content, from the first resource type that tells."""
    for rtype, event in _TYPE_EVENTS:
        focus = [r for r in content if r.get("resourceType") == rtype]
        if focus:
            return event, focus[:1]
    return None


@dataclass(slots=True)
class _Draft:
    """What the file holds, before the parties are known."""

    event: str | None = None
    content: list[dict[str, Any]] = field(default_factory=list)
    focus: list[dict[str, Any]] | None = None
    ready: dict[str, Any] | None = None  # a message Bundle sent as it is


def read_draft(path: Path, event: str | None) -> _Draft:
    """Read FILE: a legacy XML document, a message Bundle, another Bundle or one resource."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _Refused(f"cannot read {path}") from exc
    if event is not None and event not in message.EVENTS:
        raise _Refused(f"--event must be one of {', '.join(message.EVENTS)}")
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        try:
            detected = event_of_document(data)
        except MappingError as exc:
            raise _Refused(f"{path} is not a supported legacy document: {exc}") from exc
        return _Draft(event or detected, [message.binary_resource(data)])
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Refused(f"{path} is neither XML nor JSON") from exc
    if not isinstance(parsed, dict) or not isinstance(parsed.get("resourceType"), str):
        raise _Refused(f"{path} does not hold a FHIR resource")
    if parsed["resourceType"] == "Bundle" and parsed.get("type") == "message":
        return _Draft(ready=parsed)
    if parsed["resourceType"] == "Bundle":
        content = content_of_bundle(parsed)
    else:
        content = [parsed]
    if not content:
        raise _Refused(f"{path} holds no resources to send")
    inferred = event_of_content(content)
    if event is None and inferred is None:
        raise _Refused(f"cannot tell the event of {path}; give --event")
    if event is None:
        assert inferred is not None  # noqa: S101 - checked above
        return _Draft(inferred[0], content, inferred[1])
    return _Draft(event, content, inferred[1] if inferred and inferred[0] == event else None)


@dataclass(slots=True)
class _Exchange:
    """One ``send``: what it learned from the gateway so far (kept across retries)."""

    client: httpx.Client
    base: str
    name: str
    key: Key
    scope: str
    jwks: dict[str, Any] | None = None
    token: str | None = None
    token_reused: bool = False  # obtained in an earlier attempt (it may have expired since)
    bundle: dict[str, Any] | None = None

    def _get(self, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.get(url, **kwargs)
        except httpx.HTTPError as exc:
            raise _Retryable(f"cannot reach {url}: {exc.__class__.__name__}") from exc
        if response.status_code in _RETRY_STATUSES:
            raise _Retryable(f"HTTP {response.status_code} from {url}")
        return response

    def gateway_keys(self) -> dict[str, Any]:
        if self.jwks is None:
            response = self._get(self.base + "/.well-known/jwks.json")
            if not response.is_success:
                raise _Refused(f"the gateway's JWKS: HTTP {response.status_code}")
            try:
                self.jwks = dict(response.json())
            except (ValueError, TypeError) as exc:
                raise _Refused("the gateway's JWKS is not JSON") from exc
        return self.jwks

    def access_token(self) -> str:
        if self.token is not None:
            return self.token
        self.token_reused = False
        try:
            endpoint = _token_endpoint(self.client, self.base)
            form = {
                "grant_type": "client_credentials",
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": make_client_assertion(
                    self.key, self.name, endpoint, lifetime=300
                ),
                "scope": self.scope,
            }
            response = self.client.post(endpoint, data=form)
        except httpx.HTTPError as exc:
            raise _Retryable(f"cannot reach the token endpoint: {exc.__class__.__name__}") from exc
        if response.status_code in _RETRY_STATUSES:
            raise _Retryable(f"token endpoint: HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not response.is_success or not isinstance(body, dict) or "access_token" not in body:
            error = body.get("error", "") if isinstance(body, dict) else ""
            text = body.get("error_description", "") if isinstance(body, dict) else ""
            raise _Refused(f"no access token (HTTP {response.status_code} {error}: {text})")
        self.token = str(body["access_token"])
        return self.token

    def participant(self, name: str) -> Participant:
        """A participant as its Organization in the gateway's FHIR store says."""
        url = f"{self.base}/fhir/Organization/org-{name}"
        response = self._get(url, headers={"Authorization": f"Bearer {self.access_token()}"})
        if response.status_code == 404:
            raise _Refused(f"{name} is not a registered participant")
        if not response.is_success:
            raise _Refused(f"reading Organization/org-{name}: HTTP {response.status_code}")
        org = response.json()
        kind = next(
            (
                c.get("code")
                for t in org.get("type", [])
                for c in t.get("coding", [])
                if c.get("system") == KIND_SYSTEM
            ),
            "hospital",
        )
        return Participant(
            name=name,
            kind=str(kind),
            display=str(org.get("name") or name),
            identifiers=[
                {"system": i["system"], "value": i["value"]}
                for i in org.get("identifier", [])
                if isinstance(i, dict) and "system" in i and "value" in i
            ],
            organization_id=org.get("id"),
        )

    def build(self, draft: _Draft, to: list[str], cc: list[str]) -> dict[str, Any]:
        if self.bundle is None:
            if draft.ready is not None:
                self.bundle = draft.ready
            else:
                assert draft.event is not None  # noqa: S101 - read_draft sets it
                receivers = [(self.participant(n), "primary") for n in to]
                receivers += [(self.participant(n), "cc") for n in cc]
                self.bundle = message.build_message(
                    event=draft.event,
                    sender=self.participant(self.name),
                    receivers=receivers,
                    content=draft.content,
                    focus=draft.focus,
                )
        return self.bundle

    def post(self, bundle: dict[str, Any], *, encrypt: bool) -> tuple[str, dict[str, Any]]:
        """POST the sealed message; (code, acknowledgement Bundle), or raise."""
        jwks = self.gateway_keys()
        recipient = next(iter(keys_by_kid(jwks, "enc").values()), None)
        if encrypt and recipient is None:
            raise _Refused("the gateway publishes no encryption key")
        body = envelope.seal(bundle, self.key, recipient if encrypt else None)
        url = self.base + "/fhir/$process-message"
        headers = {
            "Content-Type": envelope.MEDIA_TYPE,
            "Accept": envelope.MEDIA_TYPE,
            "Authorization": f"Bearer {self.access_token()}",
        }
        try:
            response = self.client.post(url, content=body.encode("ascii"), headers=headers)
        except httpx.HTTPError as exc:
            raise _Retryable(f"cannot reach {url}: {exc.__class__.__name__}") from exc
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != envelope.MEDIA_TYPE:
            problem = f"HTTP {response.status_code}: {_outcome_text(response)}"
            if response.status_code in _RETRY_STATUSES or response.status_code >= 500:
                raise _Retryable(problem)
            if response.status_code == 401 and self.token_reused:
                self.token = None  # expired during the back-off: try once with a new one
                raise _Retryable(problem)
            raise _Refused(problem)
        try:
            ack = envelope.read_signed(response.text, keys_by_kid(jwks, "sig"))
            acknowledged, code = acks.read_ack(ack)
        except (GatewayError, ValueError) as exc:
            raise _Refused(f"the gateway's answer is not a valid acknowledgement: {exc}") from exc
        header_id = str(bundle["entry"][0]["resource"]["id"])
        if acknowledged != header_id:
            raise _Refused(f"the acknowledgement answers {acknowledged}, not {header_id}")
        return code, ack


def _outcome_text(response: httpx.Response) -> str:
    try:
        outcome = response.json()
        issues = outcome.get("issue", []) if isinstance(outcome, dict) else []
        return "; ".join(str(i.get("diagnostics", i.get("code", "?"))) for i in issues) or "-"
    except ValueError:
        return response.text[:200] or "-"


def _print_ack(code: str, ack: dict[str, Any], header_id: str) -> None:
    # Printed literally: diagnostics and expressions hold brackets ([/Emessage/…]).
    colour = {"ok": "green", "fatal-error": "red"}.get(code, "yellow")
    say(f"{code}  MessageHeader.id {header_id}", style=colour)
    for issue in acks.ack_issues(ack):
        where = ", ".join(issue.get("expression", []))
        say(
            f"  {issue.get('severity', '?')} {issue.get('code', '?')}: "
            f"{issue.get('diagnostics', '')}" + (f"  [{where}]" if where else "")
        )


def send(
    file: Annotated[Path, typer.Argument(help="a legacy XML document or FHIR JSON")],
    as_: Annotated[str, typer.Option("--as", metavar="NAME", help="the sending participant")],
    to: Annotated[
        # A list only to refuse a second --to (click would silently keep the last one).
        list[str] | None,
        typer.Option("--to", metavar="NAME", help="the receiver (one; more receivers get --cc)"),
    ] = None,
    cc: Annotated[
        list[str] | None,
        typer.Option("--cc", metavar="NAME", help="a receiver of a copy; repeat for more"),
    ] = None,
    gateway: Annotated[
        str | None,
        typer.Option(metavar="URL", help="the gateway's base URL (default BROBYGGER_BASE_URL)"),
    ] = None,
    keys_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR", help="where the sender's key file is (default BROBYGGER_KEYS_DIR)"
        ),
    ] = None,
    event: Annotated[
        str | None,
        typer.Option(metavar="EVENT", help="the message event (default: from the content)"),
    ] = None,
    scope: Annotated[
        str, typer.Option(metavar="'SCOPE …'", help="scopes to ask for, space-separated")
    ] = DEFAULT_SCOPE,
    retries: Annotated[
        int, typer.Option(metavar="N", help="tries again after transient errors")
    ] = 3,
    backoff: Annotated[
        float, typer.Option(metavar="SECONDS", help="the first wait before trying again")
    ] = 1.0,
    encrypt: Annotated[
        bool, typer.Option(help="encrypt to the gateway (--no-encrypt: closed networks)")
    ] = True,
    show_ack: Annotated[
        bool, typer.Option("--json", help="print the acknowledgement Bundle as JSON")
    ] = False,
) -> None:
    """Send FILE as a signed, encrypted message; print the gateway's acknowledgement.

    Exit code 0 for ok, 1 for fatal-error (or a refusal), 2 for transient-error.
    """
    settings = Settings()
    receivers, cc = list(to or []), list(cc or [])
    try:
        draft = read_draft(file, event)
    except _Refused as exc:
        raise _fail(str(exc)) from exc
    if draft.ready is None and len(receivers) != 1:
        raise _fail("give one receiver: --to NAME (more receivers: --cc NAME)")
    if draft.ready is not None and (receivers or cc):
        raise _fail("a message Bundle names its receivers itself; drop --to/--cc")
    key_path = private_key_path(keys_dir or settings.keys_dir, as_)
    try:
        key = read_private_key(key_path)
    except KeyUnavailable as exc:
        raise _fail(str(exc)) from exc
    base = (gateway or settings.base_url).rstrip("/")
    with _http_client() as client:
        exchange = _Exchange(client, base, as_, key, scope)
        attempt = 0
        while True:
            attempt += 1
            try:
                bundle = exchange.build(draft, receivers, cc)
                code, ack = exchange.post(bundle, encrypt=encrypt)
                if code == acks.TRANSIENT and attempt <= retries:
                    raise _Retryable(
                        "transient-error: "
                        + "; ".join(str(i.get("diagnostics", "")) for i in acks.ack_issues(ack))
                    )
                break
            except _Refused as exc:
                raise _fail(str(exc)) from exc
            except _Retryable as exc:
                if attempt > retries:
                    raise _fail(
                        f"{exc} (gave up after {attempt} attempts)", EXIT_TRANSIENT
                    ) from exc
                exchange.token_reused = exchange.token is not None
                delay = _backoff(attempt, backoff)
                say(f"{exc}; retrying in {delay:.1f} s", err=True)
                _sleep(delay)
            except GatewayError as exc:  # building or sealing refused the content
                raise _fail(str(exc)) from exc
    header_id = str(bundle["entry"][0]["resource"]["id"])
    if show_ack:
        print_json(ack)
    else:
        _print_ack(code, ack, header_id)
    raise typer.Exit({acks.OK: EXIT_OK, acks.FATAL: EXIT_FATAL}.get(code, EXIT_TRANSIENT))


# --- messages --------------------------------------------------------------------------------


async def message_overview(
    database: Database,
    *,
    participant: str | None = None,
    status: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Messages, newest first, each with its deliveries (those in ``status`` when given).

    ``participant``: messages it sent or that have a delivery to it.
    """
    query = select(messages)
    if participant is not None:
        to_it = select(deliveries.c.message_key).where(deliveries.c.receiver == participant)
        query = query.where(or_(messages.c.sender == participant, messages.c.key.in_(to_it)))
    if status is not None:
        query = query.where(
            messages.c.key.in_(
                select(deliveries.c.message_key).where(deliveries.c.status == status)
            )
        )
    query = query.order_by(messages.c.received_at.desc(), messages.c.key).limit(limit)
    overview: list[dict[str, Any]] = []
    async with database.engine.connect() as conn:
        for row in await conn.execute(query):
            record = records.message_from_row(row)
            sent_to = await records.deliveries_of(conn, record.key)
            overview.append(
                {
                    "key": record.key,
                    "message_id": record.message_id,
                    "sender": record.sender,
                    "event": record.event,
                    "received_at": format_instant(record.received_at),
                    "ack_code": record.ack_code,
                    "reply_to": record.reply_to,
                    "deliveries": [
                        d.to_json() for d in sent_to if status is None or d.status == status
                    ],
                }
            )
    return overview


def _with_database(work: Callable[[Settings, Database], Awaitable[T]]) -> T:
    settings = Settings()

    async def run() -> T:
        database = Database(settings.database_url)
        try:
            await database.migrate()
            return await work(settings, database)
        finally:
            await database.dispose()

    try:
        return asyncio.run(run())
    except GatewayError as exc:
        raise _fail(str(exc)) from exc


def list_messages(
    as_: Annotated[
        str | None,
        typer.Option(
            "--as", metavar="NAME", help="only messages this participant sent or receives"
        ),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            metavar="STATUS", help=f"only deliveries that are {', '.join(records.STATUSES)}"
        ),
    ] = None,
    limit: Annotated[int, typer.Option(metavar="N", help="at most this many messages")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
) -> None:
    """Messages and their deliveries, newest first (operators: failed ones never vanish).

    In a pipe: tab-separated lines, one delivery per line with its message's columns (the
    first line names the columns).
    """
    if status is not None and status not in records.STATUSES:
        raise _fail(f"--status must be one of {', '.join(records.STATUSES)}")

    async def work(_settings: Settings, database: Database) -> list[dict[str, Any]]:
        return await message_overview(database, participant=as_, status=status, limit=limit)

    overview: list[dict[str, Any]] = _with_database(work)
    if as_json:
        print_json({"messages": overview})
        return
    rows: list[tuple[str, ...]] = []
    for item in overview:
        lead = (
            item["received_at"][:19].replace("T", " "),
            item["sender"],
            item["event"],
            item["message_id"],
        )
        for delivery in item["deliveries"] or [None]:
            if delivery is None:
                rows.append((*lead, "-", "-", "-", "-", ""))
                continue
            rows.append(
                (
                    *lead,
                    delivery["receiver"],
                    delivery["role"],
                    delivery["status"],
                    str(delivery["attempts"]),
                    delivery["last_error"] or "",
                )
            )
    print_table(
        (
            "received (UTC)",
            "sender",
            "event",
            "message id",
            "receiver",
            "role",
            "status",
            "attempts",
            "last error",
        ),
        rows,
        title=f"Messages ({len(overview)})",
        empty="no messages",
    )


# --- deliver ---------------------------------------------------------------------------------


def deliver(
    once: Annotated[
        bool, typer.Option("--once", help="deliver what is due now, then stop")
    ] = False,
) -> None:
    """Run the store-and-forward delivery worker (until Ctrl-C, or --once)."""
    from gateway.messaging.delivery import run_deliveries

    settings = Settings()
    try:
        attempts = asyncio.run(run_deliveries(settings, once=once))
    except KeyboardInterrupt:
        say("stopped", err=True)
        return
    except GatewayError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"{attempts} delivery attempts")


# --- keys participant ------------------------------------------------------------------------


def _use(entry: dict[str, Any]) -> str:
    return str(entry.get("use", "sig"))


def _local_kid(path: Path) -> str | None:
    try:
        return str(read_private_key(path).kid) if path.exists() else None
    except KeyUnavailable:
        return None


def participant_keys(
    name: Annotated[str, typer.Argument(help="a registered participant")],
    rotate: Annotated[
        bool,
        typer.Option("--rotate", help="a new signing key; the older ones keep verifying"),
    ] = False,
    retire: Annotated[
        str | None,
        typer.Option(metavar="KID", help="stop accepting the registered key with this kid"),
    ] = None,
    alg: Annotated[
        str, typer.Option(metavar="ALG", help="algorithm of a new signing key: ES256 or ES384")
    ] = "ES256",
) -> None:
    """A participant's keys: the one command that creates, rotates and retires them.

    The private keys are files in BROBYGGER_KEYS_DIR (mode 0600); the directory holds the
    public ones. Without options: create the missing key files and register them. With
    --rotate: a new signing key becomes the current one (its file replaces the old) and is
    listed first; the older ones stay registered, so what they signed keeps verifying,
    until --retire KID removes them. The current key and the only key of a use are never
    retired. Prints every registered key; "(current)" marks the ones in BROBYGGER_KEYS_DIR.
    """
    if rotate and retire is not None:
        raise _fail("give --rotate or --retire, not both")
    if alg not in MESSAGE_SIGNING_ALGORITHMS:
        raise _fail(f"--alg must be one of {', '.join(MESSAGE_SIGNING_ALGORITHMS)}")
    settings = Settings()
    sig_path = private_key_path(settings.keys_dir, name)
    enc_path = private_key_path(settings.keys_dir, name, use="enc")
    # New private keys, written (0600) only once the directory has the public ones.
    new_files: list[tuple[Path, Key, bool]] = []
    if rotate or _local_kid(sig_path) is None:
        new_files.append((sig_path, generate_signing_key(alg), sig_path.exists()))
    if retire is None and _local_kid(enc_path) is None:
        new_files.append((enc_path, generate_encryption_key(), enc_path.exists()))
    local = {
        "sig": _local_kid(sig_path),
        "enc": _local_kid(enc_path),
    }

    async def work(_settings: Settings, database: Database) -> Participant:
        directory = ParticipantDirectory(database)
        participant = await directory.get(name)
        keys = [dict(k) for k in participant.jwks.get("keys", [])]
        if retire is not None:
            return await directory.set_jwks(name, {"keys": _retired(keys, retire, local)})
        local_keys: dict[str, Key] = {}
        for path, use in ((sig_path, "sig"), (enc_path, "enc")):
            fresh = next((k for p, k, _ in new_files if p == path), None)
            if fresh is not None:
                local_keys[use] = fresh
            elif local[use] is not None:
                local_keys[use] = read_private_key(path)
        registered = {str(k.get("kid")) for k in keys}
        for use in ("enc", "sig"):  # each current key goes first among the keys of its use
            key = local_keys.get(use)
            if key is None:
                continue
            entry = public_jwk(key)
            if str(entry["kid"]) in registered:
                continue
            first = next((i for i, k in enumerate(keys) if _use(k) == use), len(keys))
            keys.insert(first, entry)
        return await directory.set_jwks(name, {"keys": keys})

    participant: Participant = _with_database(work)
    for path, key, existed in new_files:
        write_private_key(path, key, replace=existed)
        say(f"private key written to {path}", err=True)
    # The current key of each use is the one now in KEYS_DIR: a fresh one if written, else the
    # file's (after --rotate only the new signing key is current).
    current_kids = dict(local)
    for path, key, _ in new_files:
        current_kids["sig" if path == sig_path else "enc"] = str(key.kid)
    for entry in participant.jwks.get("keys", []):
        current = entry.get("kid") == current_kids.get(_use(entry))
        typer.echo(f"{_use(entry)} {entry.get('kid')}" + ("  (current)" if current else ""))


def _retired(
    keys: list[dict[str, Any]], kid: str, local: dict[str, str | None]
) -> list[dict[str, Any]]:
    target = next((k for k in keys if k.get("kid") == kid), None)
    if target is None:
        raise _fail(f"no registered key has kid {kid}")
    use = _use(target)
    if sum(1 for k in keys if _use(k) == use) < 2:
        what = "signing" if use == "sig" else "encryption"
        raise _fail(f"{kid} is the only {what} key; rotate before retiring it")
    if local.get(use) == kid:
        raise _fail(f"{kid} is the current key in KEYS_DIR; rotate before retiring it")
    return [k for k in keys if k.get("kid") != kid]
