"""The shell blocks of README.md and docs/*.md, as the docs test runs them.

The convention (written for authors in docs/architecture.md, "Writing docs"):

- A fenced block whose info string starts with ``sh`` (or ``bash``, ``shell``) is run, in
  order with the other blocks of its file, in one shell per file (variables carry over).
- ``sh skip-docs-test: <reason>`` is not run; the test reports it as skipped with the reason.
- A line ``#> text`` inside a block is output the block must print: each such line must equal
  a line of the block's stdout (in order) or stderr; ``…`` in it matches anything.
- Every other block (json, yaml, python, text, a bare fence) is prose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SHELLS = ("sh", "bash", "shell")
SKIP_MARK = "skip-docs-test"
EXPECT_PREFIX = "#> "
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced shell block: where it is, its text, and what it must print."""

    path: Path
    line: int  # 1-based line of the opening fence
    text: str
    skip_reason: str | None = None
    expected: tuple[str, ...] = field(default=())

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def _info_kind(info: str) -> tuple[bool, str | None]:
    """(is a shell block, skip reason or None) from a fence's info string."""
    words = info.strip().split(None, 1)
    if not words or words[0] not in SHELLS:
        return False, None
    rest = words[1] if len(words) > 1 else ""
    if rest.startswith(SKIP_MARK):
        reason = rest[len(SKIP_MARK) :].lstrip(" :").strip()
        return True, reason or "(no reason given)"
    return True, None


def shell_blocks(path: Path) -> list[Block]:
    """Every shell block of a Markdown file, in order."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        fence = match["fence"]
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append(lines[index])
            index += 1
        index += 1  # the closing fence
        is_shell, skip = _info_kind(match["info"])
        if not is_shell:
            continue
        expected = tuple(
            line.strip()[len(EXPECT_PREFIX) :]
            for line in body
            if line.strip().startswith(EXPECT_PREFIX)
        )
        blocks.append(Block(path, start + 1, "\n".join(body) + "\n", skip, expected))
    return blocks


def _pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split("…")))


def missing_output(expected: tuple[str, ...], stdout: str, stderr: str) -> list[str]:
    """The expected lines the output does not show (stdout in order, else anywhere in stderr)."""
    out_lines = [line.rstrip() for line in stdout.splitlines()]
    err_lines = [line.rstrip() for line in stderr.splitlines()]
    missing: list[str] = []
    position = 0
    for line in expected:
        pattern = _pattern(line.rstrip())
        found = next(
            (i for i in range(position, len(out_lines)) if pattern.fullmatch(out_lines[i])),
            None,
        )
        if found is not None:
            position = found + 1
        elif not any(pattern.fullmatch(err) for err in err_lines):
            missing.append(line)
    return missing
