"""Placeholder: SMART Backend Services routes (being written)."""

from fastapi import APIRouter

router = APIRouter()
