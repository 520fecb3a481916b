"""Our conformance resources (JSON shipped in this package), loaded once and looked up by URL.

``definitions/`` holds StructureDefinitions (profiles and extensions), ``questionnaires/`` one
Questionnaire per form, ``codesystems/`` and ``valuesets/`` our terminology, ``measures/`` the
managers' key figures. Everything is keyed by canonical URL, with and without ``|version``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

BROBYGGER_BASE = "http://brobygger.dk/fhir"
QUESTIONNAIRE_BASE = f"{BROBYGGER_BASE}/Questionnaire/"
CODE_SYSTEM_BASE = f"{BROBYGGER_BASE}/CodeSystem/"
STRUCTURE_DEFINITION_BASE = f"{BROBYGGER_BASE}/StructureDefinition/"

_FOLDERS = ("definitions", "questionnaires", "codesystems", "valuesets", "measures")

Resource = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Registry:
    """Every resource we ship, in load order, and an index by ``url`` and ``url|version``."""

    resources: tuple[Resource, ...]
    by_canonical: Mapping[str, Resource]

    def find(self, canonical: str, resource_type: str | None = None) -> Resource | None:
        found = self.by_canonical.get(canonical)
        if found is None or (resource_type is not None and found["resourceType"] != resource_type):
            return None
        return found

    def of_type(self, resource_type: str) -> tuple[Resource, ...]:
        return tuple(r for r in self.resources if r["resourceType"] == resource_type)


def _version_key(version: str) -> tuple[tuple[int, str], ...]:
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in version.split("."))


@cache
def registry() -> Registry:
    """Load every JSON file once; a duplicate ``url|version`` is a packaging error."""
    resources: list[Resource] = []
    by_canonical: dict[str, Resource] = {}
    for folder in _FOLDERS:
        entries = sorted(files("profiles").joinpath(folder).iterdir(), key=lambda e: e.name)
        for entry in entries:
            if not entry.name.endswith(".json"):
                continue
            resource = json.loads(entry.read_text(encoding="utf-8"))
            url, version = resource["url"], resource["version"]
            versioned = f"{url}|{version}"
            if versioned in by_canonical:
                raise ValueError(f"profiles/{folder}/{entry.name}: {versioned} is defined twice")
            by_canonical[versioned] = resource
            latest = by_canonical.get(url)
            if latest is None or _version_key(version) > _version_key(latest["version"]):
                by_canonical[url] = resource
            resources.append(resource)
    return Registry(tuple(resources), by_canonical)


def get_definition(url: str) -> dict[str, Any] | None:
    """A copy of our conformance resource with this canonical (``url`` or ``url|version``)."""
    found = registry().find(url)
    return copy.deepcopy(dict(found)) if found is not None else None


def all_definitions() -> list[dict[str, Any]]:
    """Copies of every StructureDefinition, Questionnaire, CodeSystem and ValueSet we ship."""
    return [copy.deepcopy(dict(r)) for r in registry().resources]


def questionnaire_for(canonical: str) -> dict[str, Any] | None:
    """A copy of the Questionnaire a ``QuestionnaireResponse.questionnaire`` points at."""
    found = registry().find(canonical, "Questionnaire")
    return copy.deepcopy(dict(found)) if found is not None else None
