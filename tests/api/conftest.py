"""A TestClient on the real app with a fixed principal (auth itself is tested in tests/auth)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.auth.principal import Principal
from gateway.deps import get_principal
from gateway.settings import Settings

OPERATOR = Principal(
    participant="test-operator",
    kind="hospital",
    client_id="test-operator",
    scopes=frozenset({"system/*.read", "system/*.write"}),
)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    app.dependency_overrides[get_principal] = lambda: OPERATOR
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client
