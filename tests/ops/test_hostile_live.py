"""Hostile input against a real server on a loopback socket (uvicorn in its own process).

While documents with 30,000 attributes are ingested, another client keeps polling /healthz
and keeps being answered; a 4xx leaves the keep-alive connection usable. Both stores.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench._gateway import free_port, running_gateway
from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import private_key_path, read_private_key
from gateway.settings import Settings

pytestmark = pytest.mark.slow

CASE = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "formats"
    / "samples"
    / "jobcentre-case"
    / "sag-ole-aarhus.xml"
)
DOCUMENTS = 6


@pytest.fixture
def live(database_url: str, tmp_path: Path) -> Iterator[Settings]:
    port = free_port()
    settings = Settings(
        environment="development",
        database_url=database_url,
        base_url=f"http://127.0.0.1:{port}",
        var_dir=tmp_path / "var",
        keys_dir=tmp_path / "keys",
        demo=True,
    )
    # The attribute limit raised: the documents are read, mapped and validated in full.
    env = {"BROBYGGER_XML_MAX_ATTRIBUTES": "100000", "BROBYGGER_DELIVERY_IN_PROCESS": "false"}
    with running_gateway(settings, env) as running:
        yield running


def _token(settings: Settings, name: str) -> str:
    key = read_private_key(private_key_path(settings.keys_dir, name))
    response = httpx.post(
        settings.token_url,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": make_client_assertion(key, name, settings.token_url),
            "scope": "system/*.read system/*.write",
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _document(number: int) -> bytes:
    attributes = " ".join(f'a{i}="x"' for i in range(30_000))
    xml = CASE.read_bytes().replace(b"SDP-2026-004711", f"SDP-LIVE-{number}".encode())
    return xml.replace(b"<Borger>", f"<Borger {attributes}>".encode(), 1)


async def _ingest_while_polling(settings: Settings, token: str) -> tuple[list[int], int, int]:
    """(ingest statuses, polls answered while ingesting, polls that failed)."""
    ingesting = True
    answered = failed = 0

    async def poll() -> None:
        nonlocal answered, failed
        async with httpx.AsyncClient(base_url=settings.base_url, timeout=30) as client:
            while ingesting:
                try:
                    response = await client.get("/healthz")
                    if response.status_code == 200:
                        answered += 1
                    else:
                        failed += 1
                except httpx.TransportError:
                    failed += 1
                await asyncio.sleep(0.01)

    async def ingest(client: httpx.AsyncClient, number: int) -> int:
        response = await client.post(
            "/ingest/jobcentre-case",
            content=_document(number),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/xml"},
        )
        return response.status_code

    poller = asyncio.create_task(poll())
    async with httpx.AsyncClient(base_url=settings.base_url, timeout=300) as client:
        statuses = [await ingest(client, n) for n in range(DOCUMENTS)]
    ingesting = False
    await poller
    return statuses, answered, failed


def test_healthz_keeps_answering_while_30000_attribute_documents_are_ingested(
    live: Settings,
) -> None:
    token = _token(live, "jobcenter-aarhus")
    statuses, answered, failed = asyncio.run(_ingest_while_polling(live, token))
    assert statuses == [201] * DOCUMENTS
    assert failed == 0
    # Each document takes at least one poll interval; a blocked loop would answer none.
    assert answered >= DOCUMENTS


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send one request and read one whole response (Content-Length bodies only)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-body"
        body += chunk
    return head


def test_a_4xx_keeps_the_keep_alive_connection_usable(live: Settings) -> None:
    token = _token(live, "auh-ortopaedi")
    host, port = live.base_url.removeprefix("http://").split(":")
    bad = b'{"resourceType":"AAA"}'
    deep = b"[" * 50_000 + b"]" * 50_000
    requests = [
        (b"POST /fhir/Patient", bad, b"400"),
        (b"POST /fhir/$validate", deep, b"400"),
        (b"GET /fhir/Patient?family=" + b",".join(b"a%d" % i for i in range(900)), b"", b"400"),
        (b"GET /fhir/Nope/1", b"", b"404"),
        (b"GET /healthz", b"", b"200"),
    ]
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        for line, body, status in requests:
            request = (
                line + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
                b"Authorization: Bearer " + token.encode() + b"\r\n"
                b"Content-Type: application/fhir+json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            head = _exchange(sock, request)
            assert head.split(b" ")[1] == status, head
            assert b"connection: close" not in head.lower(), head
