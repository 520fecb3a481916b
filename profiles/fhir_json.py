"""FHIR JSON that keeps every decimal exactly as it was written (``0.40`` stays ``0.40``).

FHIR requires a decimal's precision to be kept: a lab value of 0.40 is not 0.4. Python's
``json`` turns ``0.40`` into the float 0.4 and ``1.000000000000000000E-245`` into ``1e-245``.
``loads`` parses every JSON number with a fraction or exponent into a ``FhirDecimal`` (a
``Decimal`` that remembers its text), so comparisons and arithmetic work by value; ``dumps``
writes that text back byte for byte. Integers are exact in Python already and stay ``int``.
Every place that parses or writes a resource (the REST body, the store, responses, messages)
goes through these two functions.
"""

from __future__ import annotations

import json
import re
import secrets
from decimal import Decimal
from typing import Any

__all__ = ["FhirDecimal", "dumps", "loads"]


class FhirDecimal(Decimal):
    """A JSON decimal with the exact text it was written as (``raw``)."""

    __slots__ = ("raw",)
    raw: str

    def __new__(cls, raw: str) -> FhirDecimal:
        value = super().__new__(cls, raw)
        value.raw = raw
        return value

    def __str__(self) -> str:
        return self.raw

    def __repr__(self) -> str:
        return f"FhirDecimal({self.raw!r})"

    # Immutable: copies are the value itself (Decimal's own copy would re-format the text).
    def __copy__(self) -> FhirDecimal:
        return self

    def __deepcopy__(self, _memo: Any) -> FhirDecimal:
        return self

    def __reduce__(self) -> tuple[type[FhirDecimal], tuple[str]]:
        return (FhirDecimal, (self.raw,))


# A per-process secret marks a decimal inside the JSON text for the one substitution pass, so
# no string a client sends can be mistaken for one.
_MARK = f"fhir-decimal-{secrets.token_hex(16)}:"
_MARKED = re.compile(re.escape(f'"{_MARK}') + r'(-?[0-9][0-9.eE+\-]*)"')
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def loads(data: str | bytes | bytearray) -> Any:
    """Parse JSON; numbers with a fraction or exponent become ``FhirDecimal``."""
    return json.loads(data, parse_float=FhirDecimal)


def _text(value: Decimal) -> str:
    if isinstance(value, FhirDecimal):
        return value.raw
    if not value.is_finite():
        raise ValueError("a FHIR decimal must be finite")
    text = str(value)
    return text if _NUMBER.fullmatch(text) else format(value, "f")


def dumps(
    value: Any,
    *,
    sort_keys: bool = False,
    indent: int | None = None,
    ensure_ascii: bool = False,
) -> str:
    """Compact JSON (or indented), with every decimal written as it was read."""
    used = False

    def default(obj: Any) -> Any:
        nonlocal used
        if isinstance(obj, Decimal):
            used = True
            return _MARK + _text(obj)
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    text = json.dumps(
        value,
        ensure_ascii=ensure_ascii,
        separators=(",", ":") if indent is None else (",", ": "),
        sort_keys=sort_keys,
        indent=indent,
        default=default,
    )
    return _MARKED.sub(r"\1", text) if used else text
