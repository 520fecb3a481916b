"""Source documents → FHIR R4 transaction Bundles: pure, no I/O besides parsing given bytes.

``map_document`` detects the format by namespace and root element, parses with a hardened
parser, checks the format's rules (``MappingError`` lists every broken one, by XPath) and
returns a ``MappingResult``: the Bundle, the warnings and the source document's identity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from lxml import etree

from mappings import gp_statement, jobcentre_case, rehab_plan
from mappings._bundle import as_collection
from mappings._errors import MappingError, MappingIssue
from mappings._profiles import declare_profiles
from mappings._result import MappingResult, SourceDocument
from mappings._xml import MAX_DOCUMENT_BYTES, XmlLimitExceeded, XmlLimits, parse_xml, root_name

_Adapter = Callable[..., MappingResult]

# Format detection by (namespace, root element): the three formats' "Input" sections.
_FORMATS: dict[tuple[str, str], tuple[str, _Adapter]] = {
    (rehab_plan.NAMESPACE, rehab_plan.ROOT): (rehab_plan.FORMAT, rehab_plan.map_rehab_plan),
    (gp_statement.NAMESPACE, gp_statement.ROOT): (
        gp_statement.FORMAT,
        gp_statement.map_gp_statement,
    ),
    (jobcentre_case.NAMESPACE, jobcentre_case.ROOT): (
        jobcentre_case.FORMAT,
        jobcentre_case.map_jobcentre_case,
    ),
}
FORMATS: tuple[str, ...] = tuple(name for name, _ in _FORMATS.values())


def _detect(root: etree._Element) -> tuple[str, _Adapter]:
    namespace, name = root_name(root)
    found = _FORMATS.get((namespace or "", name))
    if found is None:
        raise MappingError(
            [
                MappingIssue(
                    "fatal",
                    "/*",
                    "unknown document: namespace and root element match no supported format",
                )
            ]
        )
    return found


def detect_format(
    xml_bytes: bytes, *, max_bytes: int | None = None, limits: XmlLimits | None = None
) -> str:
    """``rehab-plan``, ``gp-statement`` or ``jobcentre-case``; ``MappingError`` otherwise."""
    return _detect(parse_xml(xml_bytes, max_bytes=max_bytes, limits=limits))[0]


def map_document(
    xml_bytes: bytes,
    *,
    format: str | None = None,
    now: datetime,
    sender: str | None = None,
    max_bytes: int | None = None,
    limits: XmlLimits | None = None,
) -> MappingResult:
    """Map one source document to a transaction Bundle.

    ``now`` (timezone-aware) stamps the Bundle, DocumentReference and Provenance and is the
    reference for "in the future" checks; ``sender`` is the authenticated client that handed
    the document over (a Provenance agent); ``format`` insists on one format. ``limits``
    bound the document's structure (``XmlLimitExceeded``); ``max_bytes`` overrides its size.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; known: {', '.join(FORMATS)}")
    root = parse_xml(xml_bytes, max_bytes=max_bytes, limits=limits)
    detected, adapter = _detect(root)
    if format is not None and detected != format:
        raise MappingError(
            [MappingIssue("fatal", "/*", f"expected a {format} document, this is a {detected}")]
        )
    result = adapter(root, bytes(xml_bytes), now=now, sender=sender)
    return replace(result, bundle=declare_profiles(result.bundle))


__all__ = [
    "FORMATS",
    "MAX_DOCUMENT_BYTES",
    "MappingError",
    "MappingIssue",
    "MappingResult",
    "SourceDocument",
    "XmlLimitExceeded",
    "XmlLimits",
    "as_collection",
    "detect_format",
    "map_document",
]
