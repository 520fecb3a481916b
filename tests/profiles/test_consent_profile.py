"""The Consent profile and ``consent.validate_consent`` agree on the shared rules."""

from __future__ import annotations

import pytest
from profile_cases import BREAKS, SD, broken, valid

from consent import validate_consent
from profiles import validate

CONSENT = SD + "privacy-consent"
CONSENT_KEYS = sorted(k for k, (profile, _, _) in BREAKS.items() if profile == "privacy-consent")


def test_the_valid_consent_passes_both() -> None:
    assert validate_consent(valid("privacy-consent")) == []
    assert validate(valid("privacy-consent"), profile=CONSENT).issues == ()


@pytest.mark.parametrize("key", CONSENT_KEYS)
def test_what_the_profile_rejects_validate_consent_rejects(key: str) -> None:
    _, resource, _ = broken(key)
    assert not validate(resource, profile=CONSENT).ok
    assert validate_consent(resource) != []


@pytest.mark.parametrize("field", ["patient", "dateTime", "provision"])
def test_missing_required_elements_fail_both(field: str) -> None:
    resource = valid("privacy-consent")
    del resource[field]
    assert not validate(resource, profile=CONSENT).ok
    assert validate_consent(resource) != []
