"""The rehabilitation ↔ job-centre loop as FHIR (pure): the referral and its answers, the
status and final notes with their scores, the scales, the waiting time."""

from mappings.coordination._notes import (
    FINAL_NOTE,
    STATUS_NOTE,
    Score,
    interpretation,
    note_bundle,
    score_observation,
)
from mappings.coordination._referral import (
    DECLINE_REASON_SYSTEM,
    DECLINE_REASONS,
    PLANNED_START,
    REFERRAL_ANSWER,
    REFERRAL_CATEGORY_SYSTEM,
    REHAB_REFERRAL,
    TASK_OUTPUT_SYSTEM,
    TASK_OUTPUTS,
    accepted,
    declined,
    discharged,
    output,
    referral_bundle,
    training_started,
    waiting_days,
)
from mappings.coordination._scales import SCALES, Scale

__all__ = [
    "DECLINE_REASONS",
    "DECLINE_REASON_SYSTEM",
    "FINAL_NOTE",
    "PLANNED_START",
    "REFERRAL_ANSWER",
    "REFERRAL_CATEGORY_SYSTEM",
    "REHAB_REFERRAL",
    "SCALES",
    "STATUS_NOTE",
    "TASK_OUTPUTS",
    "TASK_OUTPUT_SYSTEM",
    "Scale",
    "Score",
    "accepted",
    "declined",
    "discharged",
    "interpretation",
    "note_bundle",
    "output",
    "referral_bundle",
    "score_observation",
    "training_started",
    "waiting_days",
]
