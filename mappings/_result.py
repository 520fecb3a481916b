"""What a successful mapping returns: the Bundle, the warnings, and the source's identity."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from mappings._errors import MappingIssue


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """Who the document is, for the store's "newer version / older export" decisions.

    ``system|value`` is the business identifier of the document's main resource (the plan's
    ServiceRequest, the form's QuestionnaireResponse, the case's EpisodeOfCare); ``issued`` is
    when the sender made this version (Authorisation, Udstedt, Opdateret); ``key`` is the tag
    (``meta.tag`` with system ``…/sid/source-document``) on every resource this document owns.
    """

    format: str
    system: str
    value: str
    issued: datetime | date
    sha256: str
    key: str


@dataclass(frozen=True, slots=True)
class MappingResult:
    """A transaction Bundle (see ``mappings._bundle``) and the warnings found on the way.

    ``answers_request`` is the business identifier (system, value) of the ServiceRequest a
    medical statement answers, when the form names one: the store resolves it, links the
    statement (``basedOn``) and completes the request's Task.
    """

    format: str
    bundle: dict[str, Any]
    warnings: list[MappingIssue]
    source: SourceDocument
    answers_request: tuple[str, str] | None = None
    # The organisation the document is addressed to, as (system, value) identifiers:
    # the store tags what the document produced so that the addressee may read it.
    receiver: tuple[tuple[str, str], ...] = ()
    receiver_kind: str | None = None
