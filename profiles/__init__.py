"""Our StructureDefinitions, Questionnaires and CodeSystems, and the validator that uses them.

Pure: ``validate`` takes a resource (a dict) and returns a ``ValidationReport``; ``outcome``
turns that into the OperationOutcome ``$validate`` answers with; ``validate_incoming`` is the
check every write path runs. Base R4 comes from HL7's own definitions (``profiles/r4/``).
"""

from profiles._questionnaire import validate_questionnaire_response
from profiles._r4_definitions import json_names as element_json_names
from profiles._r4_definitions import search_parameters as official_search_parameters
from profiles._registry import (
    BROBYGGER_BASE,
    all_definitions,
    get_definition,
    questionnaire_for,
)
from profiles._report import ValidationIssue, ValidationReport, outcome
from profiles._validator import validate, validate_incoming

__all__ = [
    "BROBYGGER_BASE",
    "ValidationIssue",
    "ValidationReport",
    "all_definitions",
    "element_json_names",
    "get_definition",
    "official_search_parameters",
    "outcome",
    "questionnaire_for",
    "validate",
    "validate_incoming",
    "validate_questionnaire_response",
]
