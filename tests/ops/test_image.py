"""The Docker image's contents, built the way docker/Dockerfile builds them (no engine here).

The build context is what ``.dockerignore`` admits; a fresh virtualenv gets the locked
dependencies (``pip install --require-hashes -r requirements.lock``) and the project's wheel
(``--no-deps``), and then runs from a folder outside the repository, with production settings
against a throw-away PostgreSQL database: ``db upgrade``, ``keys gateway``, the documented
``participants add … --jwks /dev/stdin`` path, ``serve`` answering ``/healthz`` and
``/readyz``, and one line plus exit 2 when the keys are missing. The engine-only parts
(the base image, the unprivileged user, compose's networks) are checked by reading below.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from gateway.auth.keys import generate_signing_key, public_jwks

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("BROBYGGER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
START_PROBES = 600  # x 0.1 s


def build_context(target: Path) -> list[str]:
    """Copy what ``.dockerignore`` admits (``*`` then ``!entries``, then excludes) to target."""
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "the .dockerignore is an allow-list"
    admitted = [r[1:].rstrip("/") for r in rules[1:] if r.startswith("!")]
    excluded = [r.removeprefix("**/") for r in rules[1:] if not r.startswith("!")]

    def ignore(_folder: str, names: list[str]) -> list[str]:
        return [n for n in names if any(fnmatch.fnmatch(n, pattern) for pattern in excluded)]

    for name in admitted:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)
    return admitted


def _run(
    args: list[str], *, env: dict[str, str], cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with what the image holds: the lock, then the project's wheel."""
    root = tmp_path_factory.mktemp("image")
    context = root / "context"
    context.mkdir()
    admitted = build_context(context)
    assert "requirements.lock" in admitted and "gateway" in admitted
    assert not (context / "tests").exists() and not (context / "var").exists()
    venv = root / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BROBYGGER_", "VIRTUAL_ENV"))}
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin/pip"), "install", "--quiet", "--require-hashes", "-r",
         str(context / "requirements.lock")],
        [str(venv / "bin/pip"), "wheel", "--quiet", "--no-deps", "--wheel-dir",
         str(root / "wheels"), str(context)],
    ]  # fmt: skip
    for step in steps:
        done = _run(step, env=env, cwd=root)
        assert done.returncode == 0, f"{step}: {done.stdout}{done.stderr}"
    [wheel] = (root / "wheels").glob("brobygger-*.whl")
    for step in (
        [str(venv / "bin/pip"), "install", "--quiet", "--no-deps", str(wheel)],
        [str(venv / "bin/pip"), "check"],
    ):
        done = _run(step, env=env, cwd=root)
        assert done.returncode == 0, f"{step}: {done.stdout}{done.stderr}"
    return venv


@pytest.fixture
def production(image: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Production settings against a new PostgreSQL database, dropped afterwards."""
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and PostgreSQL is not reachable: {exc}")
        pytest.skip(f"SKIPPING POSTGRESQL TESTS: {exc}")
    name = f"brobygger_image_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROBYGGER_")}
    env.update(
        PATH=f"{image / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        BROBYGGER_ENVIRONMENT="production",
        BROBYGGER_DATABASE_URL=f"{base}/{name}",
        BROBYGGER_KEYS_DIR=str(tmp_path / "keys"),
    )
    (tmp_path / "app").mkdir()
    try:
        yield env
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.postgres
def test_the_image_contents_start_in_production(
    image: Path, production: dict[str, str], tmp_path: Path
) -> None:
    app = tmp_path / "app"  # the image's WORKDIR: no repository sources beside it
    brobygger = str(image / "bin/brobygger")
    where = _run([str(image / "bin/python"), "-c", "import gateway; print(gateway.__file__)"],
                 env=production, cwd=app)  # fmt: skip
    assert where.stdout.startswith(str(image)), where.stdout + where.stderr

    port = _free_port()
    without_keys = _run([brobygger, "serve", "--port", str(port)], env=production, cwd=app)
    assert without_keys.returncode == 2
    [line] = without_keys.stderr.splitlines()
    assert "production needs the gateway's keys" in line

    upgraded = _run([brobygger, "db", "upgrade"], env=production, cwd=app)
    assert upgraded.returncode == 0 and "database at revision" in upgraded.stdout, upgraded.stderr
    keys = _run([brobygger, "keys", "gateway"], env=production, cwd=app)
    assert keys.returncode == 0 and keys.stdout.count("created ") == 2, keys.stderr

    # docs/operations.md: `docker compose run -T gateway brobygger participants add … --jwks
    # /dev/stdin < file`: the participant's public keys come in on stdin.
    jwks = json.dumps(public_jwks([generate_signing_key("ES256")]))
    added = _run(
        [brobygger, "participants", "add", "fabrik", "--kind", "employer",
         "--identifier", "cvr=12345674", "--jwks", "/dev/stdin"],
        env=production, cwd=app, stdin=jwks,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "registered fabrik (employer)" in added.stdout

    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [brobygger, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=production,
            cwd=app,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        answers: dict[str, int] = {}
        for _ in range(START_PROBES):
            if server.poll() is not None:
                break
            try:
                for path in ("/healthz", "/readyz"):
                    answers[path] = httpx.get(f"http://127.0.0.1:{port}{path}").status_code
                if answers == {"/healthz": 200, "/readyz": 200}:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert answers == {"/healthz": 200, "/readyz": 200}, log.read_text()[-3000:]
        smart = httpx.get(f"http://127.0.0.1:{port}/.well-known/smart-configuration").json()
        assert smart["token_endpoint"] == f"http://127.0.0.1:{port}/auth/token"
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_dockerfile_installs_the_lock_and_the_wheel_only() -> None:
    text = (REPO / "docker" / "Dockerfile").read_text()
    assert re.findall(r"^FROM python:3\.11\.\d+-slim-\w+", text, re.MULTILINE), "a pinned tag"
    assert "pip install --require-hashes -r requirements.lock" in text
    assert "pip install --no-deps /wheels/*.whl" in text
    assert "USER brobygger" in text


def _service(compose: str, name: str) -> str:
    match = re.search(
        rf"^  {name}:\n(.*?)(?=^  \w[\w-]*:\n|^\S)", compose, re.MULTILINE | re.DOTALL
    )
    assert match is not None, name
    return match.group(1)


def test_compose_publishes_only_the_proxy_and_it_hides_the_operator_endpoints() -> None:
    compose = (REPO / "docker" / "compose.yaml").read_text()
    assert "ports:" not in _service(compose, "gateway")
    assert "ports:" not in _service(compose, "db")
    assert "ports:" in _service(compose, "proxy")
    assert "restart: on-failure:3" in _service(compose, "gateway")
    assert re.search(r"^  internal:\n    internal: true", compose, re.MULTILINE)
    for image in re.findall(r"image: (\S+)", compose):
        assert re.search(r":\d+\.\d+", image), f"{image}: pin a version tag"
    nginx = (REPO / "docker" / "nginx.conf").read_text()
    [public] = re.findall(r"location ~ \^/\((.*?)\)", nginx)
    assert set(public.split("|")) == {"fhir", "auth", "messages", "ingest", r"\.well-known"}
    assert re.search(r"location / \{\s*return 404;", nginx)
