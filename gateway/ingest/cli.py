"""``brobygger map FILE`` (a document as a FHIR collection Bundle) and ``brobygger import``.

``map`` prints JSON on stdout: the Bundle (exit 0) or an OperationOutcome (exit 2).
``import`` stores files and folders through the same pipeline as ``POST /ingest`` (an
operator tool: the sender is taken from the document, see ``docs/ingest.md``), with a
progress bar on stderr and a summary on stdout; exit 1 when any document was rejected.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from gateway.cli_output import fail, print_json, print_table, say
from gateway.errors import GatewayError, Issue, operation_outcome
from gateway.ingest.pipeline import IngestResult, ingest, mapping_error, validate_bundle
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from mappings import FORMATS, MAX_DOCUMENT_BYTES, MappingError, as_collection, map_document

_FORMAT_HELP = f"insist on one format: {' | '.join(FORMATS)} (default: detect)"


def _print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def map_file(path: Path, format: str | None) -> tuple[int, dict[str, Any]]:
    """(exit code, JSON): the collection Bundle, or an OperationOutcome naming the element."""
    if format is not None and format not in FORMATS:
        issue = Issue("invalid", f"unknown format; use one of {', '.join(FORMATS)}", "--format")
        return 2, operation_outcome([issue])
    try:
        xml_bytes = path.read_bytes()
    except OSError:
        return 2, operation_outcome([Issue("not-found", "the file cannot be read", str(path))])
    try:
        result = map_document(xml_bytes, format=format, now=datetime.now(UTC))
        validate_bundle(result.bundle)
    except MappingError as exc:
        return 2, mapping_error(exc, MAX_DOCUMENT_BYTES).outcome()
    except GatewayError as exc:
        return 2, exc.outcome()
    return 0, as_collection(result.bundle)


def source_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and every ``*.xml`` under the folders named, in a stable order."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.rglob("*.xml") if p.is_file())
        else:
            out.append(path)
    return out


@dataclass(slots=True)
class ImportSummary:
    accepted: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    updated: list[Path] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[tuple[Path, str]] = field(default_factory=list)

    def add(self, path: Path, result: IngestResult) -> None:
        getattr(self, result.status).append(path)
        self.warnings += [(path, _describe(w)) for w in result.warnings]


def _describe(issue: Issue) -> str:
    return f"{issue.expression}: {issue.text}" if issue.expression else issue.text


async def import_files(
    store: Store, files: list[Path], *, format: str | None, console: Console
) -> ImportSummary:
    summary = ImportSummary()
    columns = (
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}", markup=False),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("", total=len(files))
        for path in files:
            progress.update(task, description=path.name)
            try:
                xml_bytes = path.read_bytes()
                result = await ingest(
                    store, xml_bytes, format=format, sender_participant=None, now=datetime.now(UTC)
                )
                summary.add(path, result)
            except OSError:
                summary.rejected.append((path, "the file cannot be read"))
            except GatewayError as exc:
                reasons = "; ".join(_describe(i) for i in exc.issues)
                summary.rejected.append((path, f"{exc.status}: {reasons}"))
            progress.advance(task)
    return summary


def print_summary(summary: ImportSummary) -> None:
    """Counts, then the rejected files and the warnings; tab-separated lines in a pipe."""
    counts = [(name, len(getattr(summary, name))) for name in ("accepted", "updated", "unchanged")]
    print_table(
        ("result", "documents"),
        [*counts, ("rejected", len(summary.rejected))],
        title="brobygger import",
    )
    if summary.rejected:
        print_table(("rejected file", "reason"), summary.rejected, title="rejected")
    if summary.warnings:
        # One row per distinct warning: the same one for many files is one line.
        grouped: dict[str, list[str]] = {}
        for path, text in summary.warnings:
            grouped.setdefault(text, []).append(path.name)
        print_table(
            ("warning", "files"),
            [
                (text, ", ".join(names) if len(names) <= 3 else f"{len(names)} files")
                for text, names in grouped.items()
            ],
            title="warnings",
        )


def summary_json(summary: ImportSummary) -> dict[str, Any]:
    """The summary as JSON: the files per result, the reasons and the warnings."""
    return {
        "accepted": [str(p) for p in summary.accepted],
        "updated": [str(p) for p in summary.updated],
        "unchanged": [str(p) for p in summary.unchanged],
        "rejected": [{"file": str(p), "reason": reason} for p, reason in summary.rejected],
        "warnings": [{"file": str(p), "warning": text} for p, text in summary.warnings],
    }


def register(app: typer.Typer) -> None:
    @app.command("map")
    def map_command(
        file: Path = typer.Argument(..., help="the XML document"),
        format: str | None = typer.Option(None, "--format", metavar="FORMAT", help=_FORMAT_HELP),
    ) -> None:
        """Print a document as a FHIR Bundle (collection) on stdout; exit 2 with an
        OperationOutcome when it breaks its format's rules."""
        code, data = map_file(file, format)
        _print_json(data)
        raise typer.Exit(code)

    @app.command("import")
    def import_command(
        paths: list[Path] = typer.Argument(..., help="files or folders (*.xml, recursively)"),
        format: str | None = typer.Option(None, "--format", metavar="FORMAT", help=_FORMAT_HELP),
        as_json: bool = typer.Option(False, "--json", help="the summary as JSON"),
    ) -> None:
        """Store documents through the ingest pipeline (BROBYGGER_DATABASE_URL)."""
        if format is not None and format not in FORMATS:
            raise fail(f"--format takes one of {', '.join(FORMATS)}", 2)
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise fail(f"no such file or folder: {', '.join(missing)}", 2)
        files = source_files(paths)
        if not files:
            say(
                f"warning: no *.xml documents found in {', '.join(str(p) for p in paths)}; "
                "nothing imported",
                style="yellow",
                err=True,
            )
            raise typer.Exit(1)
        settings = Settings()

        async def run() -> ImportSummary:
            database = Database(settings.database_url)
            try:
                await database.migrate()
                store = Store(database, fhir_base=settings.fhir_base)
                return await import_files(store, files, format=format, console=Console(stderr=True))
            finally:
                await database.dispose()

        summary = asyncio.run(run())
        if as_json:
            print_json(summary_json(summary))
        else:
            print_summary(summary)
        raise typer.Exit(1 if summary.rejected else 0)
