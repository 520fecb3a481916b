"""Placeholder: `brobygger participants ...` and `brobygger token` (being written)."""

import typer


def register(app: typer.Typer) -> None:
    return None
