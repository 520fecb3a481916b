"""Danish identifier systems and their checks, as ``../shared/formats/identifiers.md`` lists them.

Each ``is_valid_*`` is a pure predicate; callers record an issue that names the element, never
the value.
"""

from __future__ import annotations

import calendar
import re

# identifiers.md, "Identifier systems".
CPR_SYSTEM = "urn:oid:1.2.208.176.1.2"
SOR_SYSTEM = "urn:oid:1.2.208.176.1.1"
YDER_SYSTEM = "urn:oid:1.2.208.176.1.4"
EAN_SYSTEM = "https://www.gs1.org/gln"  # MedCom, DK Core <= 3.4
EAN_SYSTEM_ALTERNATIVE = "http://www.gs1.org/gln"  # DK Core >= 3.5: accepted on input
CVR_SYSTEM = "http://cvr.dk"
MUNICIPALITY_SYSTEM = "http://hl7.dk/fhir/core/CodeSystem/dk-core-municipality-codes"
AUTHORISATION_SYSTEM = "https://autregweb.sst.dk"
EAN_SYSTEMS = frozenset({EAN_SYSTEM, EAN_SYSTEM_ALTERNATIVE})

_CPR_RE = re.compile(r"^\d{10}$")
_DIGITS_RE = re.compile(r"^\d+$")
_EAN_RE = re.compile(r"^\d{13}$")
_CVR_RE = re.compile(r"^\d{8}$")
_MUNICIPALITY_RE = re.compile(r"^\d{3,4}$")
_AUTHORISATION_RE = re.compile(r"^[0-9A-Za-z]{5}$")
_CVR_WEIGHTS = (2, 7, 6, 5, 4, 3, 2, 1)


def cpr_birth_year(cpr: str) -> int:
    """The full birth year from a CPR number's two-digit year and 7th digit (CPR office rule)."""
    year, seventh = int(cpr[4:6]), int(cpr[6])
    if seventh <= 3:
        return 1900 + year
    if seventh in (4, 9):
        return (2000 if year <= 36 else 1900) + year
    return (2000 if year <= 57 else 1800) + year


def is_valid_cpr(cpr: str) -> bool:
    """10 digits whose DDMMYY is a real date. No modulus-11 check (DK Core does not do it)."""
    if not _CPR_RE.match(cpr):
        return False
    day, month = int(cpr[0:2]), int(cpr[2:4])
    if not 1 <= month <= 12:
        return False
    return 1 <= day <= calendar.monthrange(cpr_birth_year(cpr), month)[1]


def is_valid_sor(sor: str) -> bool:
    """Digits (production SOR codes have at least 11; test data uses shorter ones)."""
    return bool(_DIGITS_RE.match(sor)) and len(sor) <= 20


def is_valid_yder(yder: str) -> bool:
    return bool(_DIGITS_RE.match(yder)) and len(yder) <= 10


def is_valid_ean(ean: str) -> bool:
    """13 digits with a GS1 mod-10 check digit (weights 1,3,1,… from the left)."""
    if not _EAN_RE.match(ean):
        return False
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(ean[:12]))
    return (10 - total % 10) % 10 == int(ean[12])


def is_valid_cvr(cvr: str) -> bool:
    """8 digits, weighted sum with 2,7,6,5,4,3,2,1 divisible by 11."""
    if not _CVR_RE.match(cvr):
        return False
    return sum(int(d) * w for d, w in zip(cvr, _CVR_WEIGHTS, strict=True)) % 11 == 0


def is_valid_municipality(code: str) -> bool:
    return bool(_MUNICIPALITY_RE.match(code))


def normalise_municipality(code: str) -> str:
    """Municipality codes are four digits on the wire (``751`` → ``0751``) so they match."""
    return code.zfill(4)


def is_valid_authorisation(value: str) -> bool:
    return bool(_AUTHORISATION_RE.match(value))


# Rule texts for issues (they describe the rule, never the value).
CPR_RULE = "must be a CPR number: 10 digits whose first six are a real date (DDMMYY)"
SOR_RULE = "must be a SOR code (digits)"
YDER_RULE = "must be a YDER number (digits)"
EAN_RULE = "must be an EAN/GLN number: 13 digits with a valid GS1 check digit"
CVR_RULE = "must be a CVR number: 8 digits passing the modulus-11 check"
MUNICIPALITY_RULE = "must be a municipality code (3-4 digits)"
AUTHORISATION_RULE = "must be an authorisation id (5 letters or digits)"
