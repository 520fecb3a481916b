"""Legacy documents into the store: one pipeline for ``brobygger import``, ``POST /ingest``
and (later) messaging. See ``docs/ingest.md``."""

from __future__ import annotations

from gateway.ingest.pipeline import Counts, IngestResult, StaleDocument, ingest, mapping_error

__all__ = ["Counts", "IngestResult", "StaleDocument", "ingest", "mapping_error"]
