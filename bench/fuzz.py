"""API fuzzing with schemathesis: requests generated from /openapi.json; no answer may be 5xx.

The schema is read with a real access token (``/openapi.json`` is not public, docs/auth.md)
and every generated request carries one, so the fuzzing reaches past authentication into
the bodies and parameters. The suite runs a short in-process mode
(tests/api/test_fuzz.py); this is the long mode, against a real gateway on a loopback port:

    .venv/bin/python -m bench.fuzz --examples 2000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import seed as with_seed
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bench._gateway import free_port, running_gateway
from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import private_key_path, read_private_key
from gateway.settings import Settings

PARTICIPANT = "auh-ortopaedi"
SCOPE = "system/*.read system/*.write"
_SENT = ("method", "url", "headers", "params", "json", "data", "content")


def token_form(settings: Settings, participant: str = PARTICIPANT) -> dict[str, str]:
    key = read_private_key(private_key_path(settings.keys_dir, participant))
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": make_client_assertion(key, participant, settings.token_url),
        "scope": SCOPE,
    }


def cases(raw_schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Generated requests for every operation of the schema."""
    schema = schemathesis.openapi.from_dict(raw_schema)
    operations = [result.ok() for result in schema.get_all_operations()]
    return st.one_of(*(operation.as_strategy() for operation in operations))


def request_of(case: Any, base_url: str, token: str) -> dict[str, Any]:
    """httpx keyword arguments for a generated case, with a valid token."""
    kwargs = case.as_transport_kwargs(base_url=base_url)
    sent = {k: v for k, v in kwargs.items() if k in _SENT}
    if isinstance(sent.get("data"), bytes | str):
        sent["content"] = sent.pop("data")
    sent["headers"] = {**(sent.get("headers") or {}), "Authorization": f"Bearer {token}"}
    return sent


def fuzz(
    raw_schema: dict[str, Any],
    send: Callable[[dict[str, Any]], httpx.Response],
    *,
    base_url: str,
    token: str,
    examples: int,
    seed: int | None = None,
) -> tuple[Counter[str], list[str]]:
    """Send ``examples`` generated requests; (answers by status class, the 5xx seen)."""
    statuses: Counter[str] = Counter()
    server_errors: list[str] = []

    @hypothesis_settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=seed is None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases(raw_schema))
    def run(case: Any) -> None:
        response = send(request_of(case, base_url, token))
        statuses[f"{response.status_code // 100}xx"] += 1
        if response.status_code >= 500:
            server_errors.append(
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:200]}"
            )

    if seed is not None:
        run = with_seed(seed)(run)
    run()
    return statuses, server_errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="brobygger-fuzz-") as tmp:
        work = Path(tmp)
        settings = Settings(
            environment="development",
            database_url=f"sqlite+aiosqlite:///{work}/fuzz.db",
            base_url=f"http://127.0.0.1:{free_port()}",
            var_dir=work / "var",
            keys_dir=work / "keys",
            demo=True,
        )
        with (
            running_gateway(settings, {"BROBYGGER_DELIVERY_IN_PROCESS": "false"}),
            httpx.Client(base_url=settings.base_url, timeout=120) as client,
        ):
            token = client.post("/auth/token", data=token_form(settings)).json()["access_token"]
            raw = client.get("/openapi.json", headers={"Authorization": f"Bearer {token}"})
            statuses, errors = fuzz(
                raw.raise_for_status().json(),
                lambda kwargs: client.request(**kwargs),
                base_url=settings.base_url,
                token=token,
                examples=args.examples,
                seed=args.seed,
            )
    report = {"examples": args.examples, "statuses": dict(statuses), "server_errors": errors}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
