"""The test scales of the rehabilitation notes: code, unit, range and direction (one home).

DOMAIN.md, "Coordination": PSFS 0-10 per activity, higher is better; Oswestry ODI 0-100 %,
lower is better; RTW self-efficacy; Örebro (ÖMPQ) fear-avoidance 0-30, higher is worse;
Åstrand fitness test in ml O₂/kg/min. DOMAIN.md gives no range for RTW self-efficacy: the
0-10 scale (mean of the items, higher is more confident) is the common one; Åstrand has no
upper bound, so its range is what a person reaches (10-90).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from mappings._codes import OBSERVATION_CODE_SYSTEM, UCUM_SYSTEM

# The Observation's own change: v3 ObservationInterpretation "B" (better) / "W" (worse).
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
BASELINE = "score-at-start"


@dataclass(frozen=True, slots=True)
class Scale:
    code: str
    display: str
    unit: str
    ucum: str
    low: Decimal
    high: Decimal
    higher_is_better: bool

    @property
    def direction(self) -> str:
        return "higher-is-better" if self.higher_is_better else "lower-is-better"

    def contains(self, value: Decimal) -> bool:
        return self.low <= value <= self.high


SCALES: dict[str, Scale] = {
    s.code: s
    for s in (
        Scale(
            "psfs",
            "PSFS (Patient-Specific Functional Scale)",
            "point",
            "{score}",
            Decimal(0),
            Decimal(10),
            True,
        ),
        Scale(
            "oswestry-odi", "Oswestry Disability Index", "%", "%", Decimal(0), Decimal(100), False
        ),
        Scale(
            "rtw-self-efficacy",
            "Return-to-work self-efficacy",
            "point",
            "{score}",
            Decimal(0),
            Decimal(10),
            True,
        ),
        Scale(
            "fear-avoidance",
            "Örebro (ÖMPQ) fear-avoidance",
            "point",
            "{score}",
            Decimal(0),
            Decimal(30),
            False,
        ),
        Scale(
            "astrand-fitness",
            "Åstrand fitness test (VO₂max)",
            "ml/kg/min",
            "mL/kg/min",
            Decimal(10),
            Decimal(90),
            True,
        ),
    )
}

__all__ = [
    "BASELINE",
    "INTERPRETATION_SYSTEM",
    "OBSERVATION_CODE_SYSTEM",
    "SCALES",
    "UCUM_SYSTEM",
    "Scale",
]
