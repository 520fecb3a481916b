"""Our StructureDefinitions, Questionnaires and CodeSystems, and the validator that uses them.

Pure: ``validate`` takes a resource (a dict) and returns a ``ValidationReport``; ``outcome``
turns that into the OperationOutcome ``$validate`` answers with. Base R4 comes from
``profiles.fhir_release``, the one module that imports fhir.resources.
"""

from profiles._questionnaire import validate_questionnaire_response
from profiles._registry import (
    BROBYGGER_BASE,
    all_definitions,
    get_definition,
    questionnaire_for,
)
from profiles._report import ValidationIssue, ValidationReport, outcome
from profiles._validator import validate

__all__ = [
    "BROBYGGER_BASE",
    "ValidationIssue",
    "ValidationReport",
    "all_definitions",
    "get_definition",
    "outcome",
    "questionnaire_for",
    "validate",
    "validate_questionnaire_response",
]
