"""Code tables of the rehabilitation plan adapter, each citing rehab-plan-ggop.md."""

from __future__ import annotations

from mappings._codes import code_system, extension_url, identifier_system

# "Input": TypeOfRehabilitationPlan → ServiceRequest.category ("Output": category = plan type).
PLAN_TYPE_SYSTEM = code_system("rehab-plan-type")
PLAN_TYPES: dict[str, str] = {
    "almen-basal": "Almen genoptræning på basalt niveau",
    "almen-avanceret": "Almen genoptræning på avanceret niveau",
    "specialiseret": "Specialiseret genoptræning",
    "rehabilitering-specialiseret-niveau": "Rehabilitering på specialiseret niveau",
}

# "Output": identifier = sender SOR + Letter/Identifier (value "<SOR>/<Letter/Identifier>").
LETTER_SYSTEM = identifier_system("ggop-letter")
# The MedCom envelope id, unique per sending EAN (value "<EAN>/<Envelope/Identifier>").
ENVELOPE_SYSTEM = identifier_system("medcom-envelope")

# "Output": ConsentInformed "recorded on the ServiceRequest (an extension)".
CONSENT_INFORMED_URL = extension_url("consent-informed")

# "Output": Patient/Occupation as LOINC 11341-5 History of occupation.
OCCUPATION_LOINC = "11341-5"

# "Output": AbilityAtDischarge*, PatientHealthSummary as Observations with our codes.
HEALTH_SUMMARY = "health-summary"
ABILITY_AT_DISCHARGE = "ability-at-discharge"
ABILITY_AT_DISCHARGE_EXTENDED = "ability-at-discharge-extended"

# Labels of the notes the plan's free-text elements become (ServiceRequest.note).
NOTE_LABELS: dict[str, str] = {
    "deadline": "Genoptræning skal påbegyndes senest",
    "ambulatory-control": "Ambulant kontrol på sygehuset",
    "contact-municipality": "Kontakt til kommunen",
    "health-care-team": "Sundhedsfagligt team",
    "journal-excerpt": "Journaludskrift",
}
