"""Docs that cannot go stale: every shell block of README.md and docs/*.md, run as written.

Per Markdown file: a fresh ``brobygger serve --demo`` on a free loopback port (the docs'
``127.0.0.1:8080`` is rewritten to it) in a temporary directory that stands in for the
repository root (``.venv`` links to this one's, ``../shared`` to the shared folder), with the
sample documents imported (``brobygger import ../shared/formats/samples``), as after
``make run`` and the README's first step. The file's shell blocks then run in order in one
``bash -e`` (variables carry over from block to block); each block must exit 0 and print its
``#>`` lines. Blocks marked ``skip-docs-test`` are reported as skipped, with their reason.
The convention is in docs/architecture.md, "Writing docs"; the parser is ``doc_blocks.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.docs.doc_blocks import Block, missing_output, shell_blocks

REPO = Path(__file__).resolve().parents[2]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCKS = [block for path in DOC_FILES for block in shell_blocks(path)]
BIN = Path(sys.executable).parent
DOCS_PORT = "127.0.0.1:8080"
# What a doc run may leave in the directory that stands for the repository root.
ALLOWED_IN_WORK_TREE = {".venv", "var"}
START_ATTEMPTS = 600  # x 0.1 s: the server's start-up is bounded by a count of probes


def _shared_folder() -> Path | None:
    """The ``shared/`` folder beside the repository (or an ancestor's, for a worktree)."""
    for parent in REPO.parents:
        candidate = parent / "shared"
        if (candidate / "formats" / "samples").is_dir():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BROBYGGER_", "PYTEST", "COLUMNS", "PROMETHEUS_"))
    }
    env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


@dataclass(slots=True)
class BlockResult:
    status: str  # "ok", "failed" or "not reached"
    stdout: str = ""
    stderr: str = ""


@dataclass(slots=True)
class FileRun:
    port: int
    results: dict[int, BlockResult]
    left_behind: list[str]
    server_log: str


def _start_server(
    work: Path, env: dict[str, str], log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    for _ in range(3):  # another process may take the free port before the server binds it
        port = _free_port()
        with log.open("wb") as out:
            server = subprocess.Popen(
                [
                    str(BIN / "brobygger"),
                    "serve",
                    "--demo",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        for _ in range(START_ATTEMPTS):
            if server.poll() is not None:
                break
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    return server, port
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        _stop(server)
    raise RuntimeError(f"brobygger serve --demo did not start:\n{log.read_text()[-3000:]}")


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _on_port(text: str, port: int) -> str:
    """The docs' address of ``make run`` → the test server's."""
    return text.replace(DOCS_PORT, f"127.0.0.1:{port}").replace(
        "localhost:8080", f"127.0.0.1:{port}"
    )


def _script(blocks: list[tuple[int, Block]], state: Path, port: int) -> str:
    lines = ["set -e"]
    for index, block in blocks:
        text = _on_port(block.text, port)
        lines += [
            f"echo {index} > '{state}/progress'",
            f"exec > '{state}/out-{index}' 2> '{state}/err-{index}'",
            text,
        ]
    lines.append(f"echo done > '{state}/progress'")
    return "\n".join(lines) + "\n"


def _run_script(script: Path, work: Path, env: dict[str, str], state: Path) -> None:
    """bash -e on the script, in its own process group: whatever a block leaves running (a
    server, a `&` job) is ended with it, and a block that never ends cannot hang the suite."""
    with (state / "bash.err").open("wb") as err:
        shell = subprocess.Popen(
            ["bash", str(script)],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        shell.wait(timeout=900)  # a safety net against a hung block, not a performance bound
    except subprocess.TimeoutExpired:
        (state / "hung").write_text("the block did not end\n")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()


def run_file(path: Path, root: Path) -> FileRun:
    """Run every runnable block of one doc against its own fresh demo server."""
    shared = _shared_folder()
    if shared is None:
        pytest.fail("no shared/formats/samples beside the repository: the docs need it")
    work, state = root / "repo", root / "state"
    work.mkdir(parents=True)
    state.mkdir()
    (root / "shared").symlink_to(shared)
    (work / ".venv").symlink_to(BIN.parent)
    env = _clean_env()
    server, port = _start_server(work, env, state / "server.log")
    try:
        env["BROBYGGER_BASE_URL"] = f"http://127.0.0.1:{port}"
        imported = subprocess.run(
            [str(BIN / "brobygger"), "import", "../shared/formats/samples"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert imported.returncode == 0, imported.stdout + imported.stderr
        runnable = [
            (i, b) for i, b in enumerate(BLOCKS) if b.path == path and b.skip_reason is None
        ]
        script = state / "doc.sh"
        script.write_text(_script(runnable, state, port))
        _run_script(script, work, env, state)
    finally:
        _stop(server)
    progress = (state / "progress").read_text().strip() if (state / "progress").exists() else ""
    results: dict[int, BlockResult] = {}
    reached = True
    for index, _block in runnable:
        out, err = state / f"out-{index}", state / f"err-{index}"
        if not reached or not out.exists():
            results[index] = BlockResult("not reached")
            continue
        failed = progress == str(index)
        results[index] = BlockResult(
            "failed" if failed else "ok",
            out.read_text(errors="replace"),
            err.read_text(errors="replace"),
        )
        reached = not failed
    left = sorted(p.name for p in work.iterdir() if p.name not in ALLOWED_IN_WORK_TREE)
    return FileRun(port, results, left, (state / "server.log").read_text(errors="replace"))


class _Runs(dict[Path, FileRun]):
    """Each doc is run once, when its first block is checked."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        super().__init__()
        self.factory = factory

    def __missing__(self, path: Path) -> FileRun:
        self[path] = run_file(path, self.factory.mktemp(path.stem))
        return self[path]


@pytest.fixture(scope="module")
def doc_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, FileRun]]:
    yield _Runs(tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[b.where for b in BLOCKS])
def test_doc_block(index: int, doc_runs: dict[Path, FileRun]) -> None:
    block = BLOCKS[index]
    if block.skip_reason is not None:
        pytest.skip(f"DOC BLOCK NOT RUN {block.where}: {block.skip_reason}")
    run = doc_runs[block.path]
    result = run.results[index]
    if result.status == "not reached":
        pytest.fail(f"{block.where} was not reached: an earlier block of the file failed")
    assert result.status == "ok", (
        f"{block.where} failed.\n--- block ---\n{block.text}--- stdout ---\n"
        f"{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-3000:]}"
    )
    expected = tuple(_on_port(line, run.port) for line in block.expected)
    missing = missing_output(expected, result.stdout, result.stderr)
    assert not missing, (
        f"{block.where} did not print {missing}\n--- stdout ---\n{result.stdout[-3000:]}"
        f"\n--- stderr ---\n{result.stderr[-2000:]}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", DOC_FILES, ids=[p.name for p in DOC_FILES])
def test_a_doc_writes_nothing_into_the_work_tree(path: Path, doc_runs: dict[Path, FileRun]) -> None:
    if not any(b.path == path and b.skip_reason is None for b in BLOCKS):
        pytest.skip(f"{path.name} has no runnable shell block")
    assert doc_runs[path].left_behind == [], (
        f"{path.name} left files in the repository root: use a scratch folder (mktemp -d)"
    )


_FIXED_TMP = re.compile(r"(?<![\w$])/tmp/[\w.-]+")


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[b.where for b in BLOCKS])
def test_no_block_uses_a_fixed_name_in_tmp(index: int) -> None:
    block = BLOCKS[index]
    assert not _FIXED_TMP.findall(block.text), (
        f"{block.where} uses a fixed name under /tmp (shared by everyone on the machine): "
        "use a scratch folder from mktemp -d"
    )


def _commands() -> list[str]:
    import typer.main

    from gateway.cli import app

    found: list[str] = []

    def walk(command: object, prefix: str) -> None:
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            if hasattr(sub, "commands"):
                walk(sub, f"{prefix}{name} ")
            else:
                found.append(f"{prefix}{name}")

    walk(typer.main.get_command(app), "")
    return found


def test_architecture_lists_every_command() -> None:
    """docs/architecture.md "The command line" names every ``brobygger`` command."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## The command line", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    listed = " ".join(rows)
    missing = []
    for command in _commands():
        group, _, sub = command.rpartition(" ")
        if f"`{command}`" not in listed and not (group and f"`{sub}`" in listed):
            missing.append(command)
    assert not missing, f"docs/architecture.md, 'The command line', does not list {missing}"
