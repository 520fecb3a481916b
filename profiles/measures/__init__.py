"""The managers' key figures as FHIR Measures (JSON, one per figure)."""
