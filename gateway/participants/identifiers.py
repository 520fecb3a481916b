"""Organisation identifiers a participant may carry, with their check rules.

Systems and rules from ``formats/identifiers.md`` (DK Core 3.x and MedCom): SOR, EAN/GLN
(GS1 mod-10), YDER, CVR (modulus 11) and the municipality code.
"""

from __future__ import annotations

from gateway.errors import BadRequest

SOR = "urn:oid:1.2.208.176.1.1"
YDER = "urn:oid:1.2.208.176.1.4"
# MedCom and DK Core <= 3.4 use https; DK Core >= 3.5 uses http. We store the https form.
EAN = "https://www.gs1.org/gln"
EAN_HTTP = "http://www.gs1.org/gln"
CVR = "http://cvr.dk"
MUNICIPALITY = "http://hl7.dk/fhir/core/CodeSystem/dk-core-municipality-codes"

# Command-line aliases → systems.
ALIASES: dict[str, str] = {
    "sor": SOR,
    "ean": EAN,
    "gln": EAN,
    "yder": YDER,
    "cvr": CVR,
    "municipality": MUNICIPALITY,
}
KNOWN_SYSTEMS = frozenset({SOR, YDER, EAN, CVR, MUNICIPALITY})
# Identifiers that name one organisation; a municipality code is shared by its departments.
UNIQUE_SYSTEMS = frozenset({SOR, YDER, EAN, CVR})

_CVR_WEIGHTS = (2, 7, 6, 5, 4, 3, 2, 1)


class InvalidIdentifier(BadRequest):
    """An identifier with an unknown system or a value that breaks the system's rule."""


def gs1_check_digit_ok(value: str) -> bool:
    """GS1 mod-10: weights 3,1,3,… from the right, excluding the check digit."""
    if not value.isdigit() or len(value) < 2:
        return False
    body = [int(c) for c in value[:-1]]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == int(value[-1])


def cvr_check_ok(value: str) -> bool:
    """CVR modulus 11 with weights 2,7,6,5,4,3,2,1."""
    if len(value) != 8 or not value.isdigit():
        return False
    return sum(int(c) * w for c, w in zip(value, _CVR_WEIGHTS, strict=True)) % 11 == 0


def normalise_identifier(system: str, value: str) -> dict[str, str]:
    """Return ``{"system", "value"}`` in canonical form, or raise InvalidIdentifier."""
    system = system.strip()
    value = value.strip()
    if system == EAN_HTTP:
        system = EAN
    where = f"identifier[{system}]"
    if system not in KNOWN_SYSTEMS:
        raise InvalidIdentifier(f"unknown identifier system {system!r}", expression=where)
    if not value.isdigit() or not value.isascii():
        raise InvalidIdentifier("identifier value must be digits", expression=where)
    if system == EAN:
        if len(value) != 13 or not gs1_check_digit_ok(value):
            raise InvalidIdentifier(
                "EAN/GLN must be 13 digits with a valid check digit", expression=where
            )
    elif system == CVR:
        if not cvr_check_ok(value):
            raise InvalidIdentifier(
                "CVR must be 8 digits passing the modulus-11 check", expression=where
            )
    elif system == MUNICIPALITY:
        if not 3 <= len(value) <= 4:
            raise InvalidIdentifier("a municipality code has 3-4 digits", expression=where)
        value = value.zfill(4)
    elif system == SOR:
        if len(value) > 20:
            raise InvalidIdentifier("a SOR code has at most 20 digits", expression=where)
    elif system == YDER and len(value) > 10:
        raise InvalidIdentifier("a YDER number has at most 10 digits", expression=where)
    return {"system": system, "value": value}


def parse_alias(text: str) -> dict[str, str]:
    """``ean=5790000121526`` (or ``<system-url>=<value>``) → a normalised identifier."""
    alias, sep, value = text.partition("=")
    if not sep:
        raise InvalidIdentifier(f"expected ALIAS=VALUE, got {text!r}", expression="identifier")
    system = ALIASES.get(alias.strip().lower(), alias.strip())
    return normalise_identifier(system, value)
