"""Code tables of the case adapter; each cites the part of jobcentre-case.md it comes from."""

from __future__ import annotations

from collections.abc import Mapping

from mappings._codes import code_system, extension_url, identifier_system

# "Output": EpisodeOfCare identifier = municipality code + SagId (value "<kommunekode>/<SagId>").
CASE_SYSTEM = identifier_system("sickness-benefit-case")
# A caseworker is known by initials within a municipality (value "<kommunekode>/<initials>").
CASEWORKER_SYSTEM = identifier_system("caseworker-initials")
EPISODE_TYPE_SYSTEM = code_system("episode-type")
EPISODE_TYPE = "sickness-benefit-case"

# "Input": Sygemeldt @fra.
SICK_LISTED_FROM_SYSTEM = code_system("sick-listed-from")
SICK_LISTED_FROM: Mapping[str, str] = {
    "beskaeftigelse": "Sygemeldt fra beskæftigelse",
    "ledighed": "Sygemeldt fra ledighed",
    "selvstaendig": "Sygemeldt som selvstændig",
}
# "Input": Kategori (sygedagpengeloven §12).
CATEGORY_SYSTEM = code_system("sickness-benefit-category")
CATEGORIES: Mapping[str, str] = {
    "1": "Kategori 1: forventes raskmeldt inden 8 uger",
    "2": "Kategori 2: sygdomsforløb ud over 8 uger",
    "3": "Kategori 3: langvarigt og komplekst sygdomsforløb",
}
# "Input": Diagnosegruppe; "Output": psykisk is labelled mental-health.
DIAGNOSIS_GROUP_SYSTEM = code_system("diagnosis-group")
DIAGNOSIS_GROUPS: Mapping[str, str] = {
    "muskel-skelet": "Muskel- og skeletlidelser",
    "psykisk": "Psykiske lidelser",
    "kraeft": "Kræft",
    "hjerte-kar": "Hjerte-kar-sygdomme",
    "andet": "Andet",
}
MENTAL_HEALTH_GROUPS = frozenset({"psykisk"})

# "Output": Encounter class by form (AMB in person / VR for phone or digital).
FOLLOW_UP_CLASS: Mapping[str, tuple[str, str]] = {
    "personligt": ("AMB", "ambulatory"),
    "telefonisk": ("VR", "virtual"),
    "digitalt": ("VR", "virtual"),
}
CONTACT_FORM_SYSTEM = code_system("follow-up-form")
FOLLOW_UP_TYPE_SYSTEM = code_system("follow-up-type")
FOLLOW_UP_TYPES: Mapping[str, str] = {
    "forste": "Første opfølgningssamtale",
    "loebende": "Løbende opfølgningssamtale",
    "rundbord": "Rundbordssamtale",
}
PARTICIPANT_ROLE_SYSTEM = code_system("case-participant-role")
PARTICIPANT_ROLES = frozenset(
    {"borger", "sagsbehandler", "terapeut", "laege", "arbejdsgiver", "fagforening", "andet"}
)
ASSESSMENT_SYSTEM = code_system("work-ability-assessment")
ASSESSMENTS: Mapping[str, str] = {
    "uarbejdsdygtig": "Uarbejdsdygtig",
    "delvist-uarbejdsdygtig": "Delvist uarbejdsdygtig",
    "raskmeldt": "Raskmeldt",
}
# "Input": Periode/Dage (man,tir,…) → FHIR days-of-week.
DAYS: Mapping[str, str] = {
    "man": "mon",
    "tir": "tue",
    "ons": "wed",
    "tor": "thu",
    "fre": "fri",
    "loer": "sat",
    "soen": "sun",
}
CAREPLAN_CATEGORY_SYSTEM = code_system("care-plan-category")
GRADUAL_RETURN = "gradual-return-to-work"
MAX_HOURS_PER_WEEK = 37  # "Rejected: hours per week outside 0-37"

# "Input" (1.1): Udbetalinger/Periode @art; barsel never counts towards the 22 weeks.
PAYMENT_ARTS = frozenset({"sygedagpenge", "refusion", "nedsat", "barsel"})
# "Input" (1.1): Tider, times of day in a Periode of the gradual-return plan.
TIME_WORDS: Mapping[str, str] = {"formiddag": "Formiddag", "eftermiddag": "Eftermiddag"}
# "Output": Revurdering @forlaengelse → §27 stk. 1 nr. 1-7, in the order the format lists them.
EXTENSION_GROUND_SYSTEM = code_system("extension-ground")
EXTENSION_GROUNDS: Mapping[str, str] = {
    "revalidering": "§27 stk. 1 nr. 1: revalidering skønnes at kunne komme på tale",
    "afklaring-arbejdsevne": "§27 stk. 1 nr. 2: arbejdsevnen skal afklares (højst 69 uger)",
    "laegebehandling": (
        "§27 stk. 1 nr. 3: under eller venter på lægebehandling (højst 134 uger fra revurderingen)"
    ),
    "rehabiliteringsteam": "§27 stk. 1 nr. 4: sagen forelægges rehabiliteringsteamet",
    "livstruende-sygdom": "§27 stk. 1 nr. 5: livstruende, alvorlig sygdom",
    "arbejdsskade": "§27 stk. 1 nr. 6: arbejdsskadesag under behandling",
    "foertidspension": "§27 stk. 1 nr. 7: førtidspension er søgt eller oplagt",
}
EXTENSION_GROUND_URL = extension_url("extension-ground")
# A week's hours worked below the plan's hours for that week are a shortfall.
SHORTFALL_INTERPRETATION_SYSTEM = (
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
)

REASSESSMENT_OUTCOME_SYSTEM = code_system("reassessment-outcome")
REASSESSMENT_OUTCOMES: Mapping[str, str] = {
    "forlaenget": "Forlænget",
    "jobafklaringsforloeb": "Jobafklaringsforløb",
    "ophoert": "Ophørt",
}
CLOSING_REASON_SYSTEM = code_system("case-closing-reason")
CLOSING_REASONS = frozenset(
    {
        "raskmeldt-job",
        "raskmeldt-ledighed",
        "uddannelse",
        "jobafklaringsforloeb",
        "ressourceforloeb",
        "fleksjob",
        "foertidspension",
        "folkepension",
        "barsel",
        "fraflyttet",
        "doed",
        "manglende-medvirken",
        "andet",
    }
)

# Extensions on the EpisodeOfCare and the Encounters ("Output": "as extensions").
CATEGORY_URL = extension_url("sickness-benefit-category")
SICK_LISTED_FROM_URL = extension_url("sick-listed-from")
EMPLOYER_URL = extension_url("employer")
DIAGNOSIS_GROUP_URL = extension_url("diagnosis-group")
CLOSING_REASON_URL = extension_url("case-closing-reason")
AGREED_ACTION_URL = extension_url("agreed-action")
# R4 Encounter has no ``note``: the follow-up's note is an extension (valueAnnotation).
ENCOUNTER_NOTE_URL = extension_url("encounter-note")
