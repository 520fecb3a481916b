"""/metrics: an app-owned registry, route templates as labels, store errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from fastapi import FastAPI, Request
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from gateway.ops import GatewayMetrics, install_operations, metrics_of, record_store_error

CPR = "0101801234"
OPERATOR_TOKEN = "multiprocess-test-operator-token-0123456789"


def _operator(client: TestClient) -> dict[str, str]:
    """The operator's Authorization header for the app behind ``client``."""
    token = client.app.state.operator_token
    return {"Authorization": f"Bearer {token}"}


def _samples(client: TestClient, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    response = client.get("/metrics", headers=_operator(client))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _count(client: TestClient, method: str, route: str, status: int) -> float:
    key = (("method", method), ("route", route), ("status", str(status)))
    return _samples(client, "brobygger_http_requests_total").get(key, 0.0)


def test_requests_are_counted_by_route_template(ops_client: TestClient) -> None:
    ops_client.get(f"/fhir/Patient/{CPR}")  # 401 without a token: counted all the same
    ops_client.get(f"/fhir/Patient?identifier=urn:oid:1.2.208.176.1.2|{CPR}")
    ops_client.get(f"/no/such/{CPR}")
    assert _count(ops_client, "GET", "/fhir/{resource_type}/{resource_id}", 401) == 1
    assert _count(ops_client, "GET", "/fhir/{resource_type}", 401) == 1
    assert _count(ops_client, "GET", "<unmatched>", 404) == 1
    text = ops_client.get("/metrics", headers=_operator(ops_client)).text
    assert CPR not in text
    assert "/fhir/Patient" not in text


def test_duration_histogram_has_method_and_route(ops_client: TestClient) -> None:
    ops_client.get("/healthz")
    counts = _samples(ops_client, "brobygger_http_request_duration_seconds_count")
    assert counts[(("method", "GET"), ("route", "/healthz"))] == 1


def test_unknown_methods_share_one_label(ops_client: TestClient) -> None:
    ops_client.request("BREW", "/healthz")
    labels = {dict(k)["method"] for k in _samples(ops_client, "brobygger_http_requests_total")}
    assert "BREW" not in labels
    assert "other" in labels


def test_each_app_has_its_own_registry(ops_client: TestClient, ops_app: FastAPI) -> None:
    other = FastAPI()
    install_operations(other, ops_app.state.settings)
    with TestClient(other) as other_client:
        other_client.get("/healthz")
        other_client.get("/healthz")
    ops_client.get("/healthz")
    assert _count(ops_client, "GET", "/healthz", 200) == 1
    assert metrics_of(other) is not metrics_of(ops_app)


def test_record_store_error(ops_client: TestClient, ops_app: FastAPI) -> None:
    record_store_error(ops_app, "search")
    record_store_error(ops_app, "search")
    record_store_error(ops_app, f"Patient {CPR}")  # not an operation name: counted as "other"
    errors = _samples(ops_client, "brobygger_store_errors_total")
    assert errors == {(("operation", "search"),): 2.0, (("operation", "other"),): 1.0}


def test_record_store_error_from_a_request_and_without_operations() -> None:
    app = FastAPI()
    record_store_error(app, "read")  # operations not installed: a no-op, not an error
    metrics = GatewayMetrics()
    app.state.metrics = metrics

    @app.get("/fail")
    async def fail(request: Request) -> dict[str, str]:
        record_store_error(request, "read")
        return {}

    TestClient(app).get("/fail")
    assert b'brobygger_store_errors_total{operation="read"} 1.0' in metrics.exposition()


def test_multiprocess_mode_sums_the_workers(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR each process writes there and /metrics adds them up."""
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    script = textwrap.dedent(
        """
        import os, sys
        from fastapi import FastAPI, Request
        from starlette.testclient import TestClient
        from gateway.ops import install_operations
        from gateway.settings import Settings

        app = FastAPI()
        install_operations(app, Settings())
        with TestClient(app) as client:
            client.get("/healthz")
            operator = {"Authorization": "Bearer " + os.environ["BROBYGGER_OPERATOR_TOKEN"]}
            sys.stdout.write(client.get("/metrics", headers=operator).text)
        """
    )
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "BROBYGGER_OPERATOR_TOKEN": OPERATOR_TOKEN,
    }
    outputs = [
        subprocess.run(
            [sys.executable, "-W", "ignore", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for _worker in range(2)
    ]
    line = 'brobygger_http_requests_total{method="GET",route="/healthz",status="200"} 2.0'
    assert line in outputs[1]
