"""Placeholder: health, readiness, metrics, logging (being written)."""

from fastapi import FastAPI

from gateway.settings import Settings


def install_operations(app: FastAPI, settings: Settings) -> None:
    return None
