"""A real gateway on a real socket: uvicorn in a background thread, tokens from /auth/token.

Shared by ``tests/live`` and ``tests/validate`` (imported as ``live.harness``: ``tests/`` is on
``sys.path`` through the root conftest). Nothing here fakes auth: tokens are obtained with a
demo participant's dev key, a signed client assertion and the real token endpoint.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn

from gateway.app import create_app
from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.citizens import lookup_cpr
from gateway.auth.keys import private_key_path, read_private_key
from gateway.settings import Settings

# A demo hospital department: may read and write everything it is granted.
PARTICIPANT = "auh-ortopaedi"
READ_WRITE = "system/*.read system/*.write"
START_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class LiveGateway:
    """A running gateway: where it listens and how to get a token for it."""

    settings: Settings

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    @property
    def fhir_base(self) -> str:
        return self.settings.fhir_base

    def client_assertion(self, participant: str = PARTICIPANT, cpr: str | None = None) -> str:
        key = read_private_key(private_key_path(self.settings.keys_dir, participant))
        return make_client_assertion(key, participant, self.settings.token_url, cpr=cpr)

    def token(
        self,
        participant: str = PARTICIPANT,
        scope: str = READ_WRITE,
        purpose: str | None = None,
        patient: str | None = None,
    ) -> str:
        """An access token from ``POST /auth/token`` over the socket.

        ``patient`` (``Patient/<id>``) is the citizen portal's patient context; the assertion
        vouches for its citizen (the CPR number the stored Patient carries).
        """
        cpr = None if patient is None else lookup_cpr(self.settings.database_url, patient)
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self.client_assertion(participant, cpr),
            "scope": scope,
        }
        if purpose is not None:
            form["purpose"] = purpose
        if patient is not None:
            form["patient"] = patient
        response = httpx.post(self.settings.token_url, data=form, timeout=30)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve(settings: Settings) -> Iterator[LiveGateway]:
    """Run ``create_app`` under uvicorn on a free loopback port until the block ends.

    The socket is bound here and handed to uvicorn, so no other process can take the port
    between choosing and listening. The demo participants (and their dev keys in
    ``settings.keys_dir``) are created by the app's own start-up.
    """
    sock = _bound_socket()
    port = sock.getsockname()[1]
    live = settings.model_copy(update={"base_url": f"http://127.0.0.1:{port}", "demo": True})
    config = uvicorn.Config(
        create_app(live),
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="on",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"gateway:{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the gateway stopped during start-up (see the captured log)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start within {START_TIMEOUT_SECONDS} s")
            time.sleep(0.01)
        yield LiveGateway(live)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "the gateway thread did not stop"
