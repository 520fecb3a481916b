"""A real gateway for benchmarks: uvicorn in its own process on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from gateway.settings import Settings

START_TIMEOUT_SECONDS = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_gateway(settings: Settings, extra_env: dict[str, str]) -> Iterator[Settings]:
    """``python -m uvicorn gateway.app:create_app --factory``, one worker, demo participants.

    ``settings.base_url`` must name the loopback port to listen on; ``extra_env`` adds
    ``BROBYGGER_*`` variables. Stops the process (terminate, then kill) on the way out.
    """
    with gateway_process(settings, extra_env):
        yield settings


@contextmanager
def gateway_process(
    settings: Settings, extra_env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """As :func:`running_gateway`, yielding the server process (for its pid: RSS, children)."""
    port = settings.base_url.rsplit(":", 1)[1]
    env = {
        **os.environ,
        "BROBYGGER_ENVIRONMENT": settings.environment,
        "BROBYGGER_DATABASE_URL": settings.database_url,
        "BROBYGGER_BASE_URL": settings.base_url,
        "BROBYGGER_VAR_DIR": str(settings.var_dir),
        "BROBYGGER_KEYS_DIR": str(settings.keys_dir),
        "BROBYGGER_DEMO": "true",
        "BROBYGGER_LOG_LEVEL": "WARNING",
        **extra_env,
    }
    command = [
        sys.executable,
        *("-m", "uvicorn", "gateway.app:create_app", "--factory"),
        *("--host", "127.0.0.1", "--port", port),
        *("--workers", "1", "--log-level", "warning", "--no-access-log"),
    ]
    process = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the gateway exited with {process.returncode} while starting")
            try:
                if httpx.get(settings.fhir_base + "/metadata", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"the gateway did not answer /fhir/metadata within {START_TIMEOUT_SECONDS} s"
                )
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
