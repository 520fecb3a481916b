"""Fixtures for independent validation: the live gateway and the external ``fhir-validate`` tool.

The tool (``../shared/tools/fhir-validate`` beside the repository, or the path in
``BROBYGGER_FHIR_VALIDATE``) is Node-based and installs its npm packages on first use. When it
cannot run (exit 2, no Node) the tests are skipped loudly, and fail under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from live.harness import LiveGateway, serve

from gateway.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
RELATIVE_TOOL = REPO_ROOT.parent / "shared" / "tools" / "fhir-validate"
IN_CI = os.environ.get("CI", "").lower() == "true"
# The first run installs npm packages (about a minute); later runs start Node only.
TIMEOUT_SECONDS = 600


@dataclass(frozen=True, slots=True)
class Validation:
    returncode: int
    output: str


def _tool() -> Path | None:
    if RELATIVE_TOOL.is_file():
        return RELATIVE_TOOL
    configured = os.environ.get("BROBYGGER_FHIR_VALIDATE")
    if configured and Path(configured).is_file():
        return Path(configured)
    return None


def _cannot_run(reason: str) -> None:
    message = f"fhir-validate CANNOT RUN, FHIR OUTPUT NOT VALIDATED: {reason}"
    if IN_CI:
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def fhir_validate() -> Callable[[list[Path]], Validation]:
    """Run the validator once over many files (Node start-up is slow: batch them)."""
    tool = _tool()
    if tool is None:
        _cannot_run(f"not found at {RELATIVE_TOOL} and BROBYGGER_FHIR_VALIDATE is not set")
    assert tool is not None
    if shutil.which("node") is None:
        _cannot_run("Node.js is not installed")

    def validate(files: list[Path]) -> Validation:
        assert files, "nothing to validate"
        try:
            done = subprocess.run(
                [str(tool), *map(str, files)],
                capture_output=True,
                text=True,
                timeout=TIMEOUT_SECONDS,
                check=False,
            )
        except OSError as exc:
            _cannot_run(f"{tool}: {exc}")
            raise
        output = done.stdout + done.stderr
        if done.returncode == 2:
            _cannot_run(output.strip() or "exit 2")
        return Validation(done.returncode, output)

    return validate


@pytest.fixture
def live_gateway(settings: Settings) -> Iterator[LiveGateway]:
    with serve(settings) as gateway:
        yield gateway
