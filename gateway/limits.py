"""Limits on hostile or broken input: one home for reading JSON bodies and for the limits'
values, taken from the settings (``BROBYGGER_JSON_MAX_DEPTH`` …).

Every JSON body the gateway reads from a client goes through :func:`load_json`: depth, array
length and string length are checked before anything else looks at it, and a nesting deep
enough to exhaust Python's recursion is a 400, never a ``RecursionError``. A refusal is a
``LimitExceeded`` (400, ``too-costly``) whose text names the setting to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import BadRequest, LimitExceeded
from gateway.settings import Settings
from mappings import MAX_DOCUMENT_BYTES, XmlLimitExceeded, XmlLimits
from profiles import fhir_json


def setting_name(field: str) -> str:
    """The environment variable of a settings field (what an operator changes)."""
    return f"BROBYGGER_{field.upper()}"


def exceeded(field: str, value: int, text: str, expression: str | None = None) -> LimitExceeded:
    """A refusal naming the limit: ``"<text> (limit BROBYGGER_X=<value>)"``."""
    return LimitExceeded(f"{text} (limit {setting_name(field)}={value})", expression=expression)


# --- JSON -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JsonLimits:
    max_depth: int = 64
    max_array_length: int = 10_000
    max_string_chars: int = 7_500_000


def json_limits(settings: Settings) -> JsonLimits:
    return JsonLimits(
        settings.json_max_depth, settings.json_max_array_length, settings.json_max_string_chars
    )


def load_json(raw: bytes | str, limits: JsonLimits, *, what: str = "the body") -> Any:
    """``json.loads`` with the structural limits; ``BadRequest`` for anything not JSON."""
    try:
        data = fhir_json.loads(raw)  # decimals keep their text (profiles.fhir_json)
    except RecursionError as exc:
        raise exceeded("json_max_depth", limits.max_depth, f"{what} nests too deep", "$") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{what} is not valid JSON", expression="$") from exc
    if _breaks_limits(data, limits):
        raise _first_violation(data, limits, what)
    return data


def _breaks_limits(data: Any, limits: JsonLimits) -> bool:
    """The fast pass: no paths, an explicit stack (never recursion)."""
    max_depth, max_length, max_chars = (
        limits.max_depth,
        limits.max_array_length,
        limits.max_string_chars,
    )
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            values: Any = node.values()
            if any(len(key) > max_chars for key in node):
                return True
        elif isinstance(node, list):
            if len(node) > max_length:
                return True
            values = node
        else:
            if isinstance(node, str) and len(node) > max_chars:
                return True
            continue
        if depth > max_depth:
            return True
        for value in values:
            if isinstance(value, dict | list):
                stack.append((value, depth + 1))
            elif isinstance(value, str) and len(value) > max_chars:
                return True
    return False


def _first_violation(data: Any, limits: JsonLimits, what: str) -> LimitExceeded:
    """The slow pass, only after a refusal: where (a JSON pointer) and which limit."""
    stack: list[tuple[Any, int, str]] = [(data, 1, "")]
    while stack:
        node, depth, pointer = stack.pop()
        where = pointer or "/"
        if isinstance(node, str):
            if len(node) > limits.max_string_chars:
                return exceeded(
                    "json_max_string_chars",
                    limits.max_string_chars,
                    f"a string in {what} is too long",
                    where,
                )
            continue
        if not isinstance(node, dict | list):
            continue
        if depth > limits.max_depth:
            return exceeded("json_max_depth", limits.max_depth, f"{what} nests too deep", where)
        if isinstance(node, list):
            if len(node) > limits.max_array_length:
                return exceeded(
                    "json_max_array_length",
                    limits.max_array_length,
                    f"an array in {what} is too long",
                    where,
                )
            items: list[tuple[str, Any]] = [(str(i), v) for i, v in enumerate(node)]
        else:
            items = list(node.items())
        for key, value in reversed(items):
            if len(key) > limits.max_string_chars:
                return exceeded(
                    "json_max_string_chars",
                    limits.max_string_chars,
                    f"a key in {what} is too long",
                    where,
                )
            escaped = key.replace("~", "~0").replace("/", "~1")
            stack.append((value, depth + 1, f"{pointer}/{escaped}"))
    return exceeded("json_max_depth", limits.max_depth, f"{what} breaks a limit", "/")


# --- XML --------------------------------------------------------------------------------------


def xml_limits(settings: Settings, max_bytes: int | None = None) -> XmlLimits:
    """The settings' XML limits; ``max_bytes`` defaults to the smaller of the two size limits."""
    return XmlLimits(
        max_bytes=max_bytes or min(settings.max_body_bytes, MAX_DOCUMENT_BYTES),
        max_attributes=settings.xml_max_attributes,
        max_elements=settings.xml_max_elements,
        max_depth=settings.xml_max_depth,
        max_text_chars=settings.xml_max_text_chars,
    )


def xml_limit_error(exc: XmlLimitExceeded) -> LimitExceeded:
    issue = exc.issues[0]
    text = issue.text.rsplit(" (limit ", 1)[0]
    return exceeded(f"xml_{exc.limit}", exc.value, text, issue.expression)


# --- search -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchLimits:
    max_or_values: int = 100
    max_parameters: int = 30
    max_chain_depth: int = 3
    max_includes: int = 10
    max_included_resources: int = 1_000


def search_limits(settings: Settings) -> SearchLimits:
    return SearchLimits(
        settings.search_max_or_values,
        settings.search_max_parameters,
        settings.search_max_chain_depth,
        settings.search_max_includes,
        settings.search_max_included_resources,
    )


__all__ = [
    "JsonLimits",
    "SearchLimits",
    "exceeded",
    "json_limits",
    "load_json",
    "search_limits",
    "setting_name",
    "xml_limit_error",
    "xml_limits",
]
