"""Identifier rules: GS1 mod-10 for EAN/GLN, modulus 11 for CVR, municipality codes."""

from __future__ import annotations

import pytest

from gateway.participants.demo import DEMO_PARTICIPANTS
from gateway.participants.identifiers import (
    CVR,
    EAN,
    MUNICIPALITY,
    SOR,
    YDER,
    InvalidIdentifier,
    cvr_check_ok,
    gs1_check_digit_ok,
    normalise_identifier,
    parse_alias,
)


@pytest.mark.parametrize("gln", ["5790000121526", "5790000111114", "4006381333931"])
def test_valid_gln(gln: str) -> None:
    assert gs1_check_digit_ok(gln)


@pytest.mark.parametrize("gln", ["5790000121527", "579000012152", "x790000121526", ""])
def test_invalid_gln(gln: str) -> None:
    assert not (len(gln) == 13 and gs1_check_digit_ok(gln))


@pytest.mark.parametrize("cvr", ["35411003", "29421005"])
def test_valid_cvr(cvr: str) -> None:
    assert cvr_check_ok(cvr)


@pytest.mark.parametrize("cvr", ["35411004", "3541100", "354110030", "abcdefgh"])
def test_invalid_cvr(cvr: str) -> None:
    assert not cvr_check_ok(cvr)


def test_every_demo_identifier_passes_its_check() -> None:
    for participant in DEMO_PARTICIPANTS:
        for ident in participant.identifiers:
            assert normalise_identifier(ident["system"], ident["value"]) == ident


def test_aliases_and_normalisation() -> None:
    assert parse_alias("sor=265161000016000") == {"system": SOR, "value": "265161000016000"}
    assert parse_alias("EAN=5790000121526") == {"system": EAN, "value": "5790000121526"}
    assert parse_alias("yder=045612") == {"system": YDER, "value": "045612"}
    assert parse_alias("cvr=35411003") == {"system": CVR, "value": "35411003"}
    assert parse_alias("municipality=751") == {"system": MUNICIPALITY, "value": "0751"}
    assert normalise_identifier("http://www.gs1.org/gln", "5790000121526")["system"] == EAN
    assert parse_alias(f"{SOR}=123")["system"] == SOR


@pytest.mark.parametrize(
    "text",
    [
        "ean=5790000121527",
        "ean=579000012152",
        "cvr=35411004",
        "municipality=12345",
        "sor=12a",
        "yder=",
        "cpr=1507791235",
        "http://example.org=1",
        "sor",
        "sor=١٢٣",
    ],
)
def test_invalid_identifiers_are_refused(text: str) -> None:
    with pytest.raises(InvalidIdentifier):
        parse_alias(text)
