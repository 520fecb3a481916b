"""Short API fuzzing in the suite: schemathesis requests from /openapi.json, no 5xx.

The long mode is ``python -m bench.fuzz`` against a real server (bench/README.md).
"""

from __future__ import annotations

from typing import Any

import httpx
from starlette.testclient import TestClient

from bench.fuzz import fuzz, token_form
from gateway.app import create_app
from gateway.settings import Settings

EXAMPLES = 120


def test_generated_requests_never_get_a_5xx(settings: Settings) -> None:
    demo = settings.model_copy(update={"demo": True})
    app = create_app(demo)
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as client:
        token = client.post("/auth/token", data=token_form(demo)).json()["access_token"]
        schema = client.get("/openapi.json", headers={"Authorization": f"Bearer {token}"})
        assert schema.status_code == 200, schema.text

        def send(kwargs: dict[str, Any]) -> httpx.Response:
            return client.request(**kwargs)

        statuses, server_errors = fuzz(
            schema.json(), send, base_url="http://testserver", token=token, examples=EXAMPLES
        )
    assert server_errors == []
    assert sum(statuses.values()) >= EXAMPLES // 2
    # The token is valid: the fuzzing gets past authentication to the handlers.
    assert statuses["2xx"] > 0 and statuses["4xx"] > 0
