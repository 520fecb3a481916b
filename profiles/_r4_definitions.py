"""HL7's R4 definitions (``profiles/r4/definitions.json.gz``) as look-up tables, built once.

The file is a generated extract of the official R4 StructureDefinitions, required value sets,
core extension URLs and SearchParameters (``profiles/r4/generate.py`` says from where). Here
each type becomes a ``Structure``: per element path the children a JSON object may hold, with
cardinality, types, invariants, fixed values and required codes.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any


@dataclass(frozen=True, slots=True)
class Invariant:
    key: str
    severity: str
    human: str
    expression: str


@dataclass(slots=True)
class Element:
    """One element definition, as a child of its parent's JSON object."""

    name: str  # JSON name, without ``[x]``
    path: str  # where its own children are defined (after following contentReference)
    structure: str
    min: int
    max: int | None  # None: unbounded
    types: tuple[str, ...]
    targets: tuple[str, ...]
    invariants: tuple[Invariant, ...]
    fixed: tuple[str, Any] | None
    value_set: str | None
    max_length: int | None
    choice: bool = False

    @property
    def many(self) -> bool:
        return self.max is None or self.max > 1


@dataclass(slots=True)
class Structure:
    name: str
    kind: str
    abstract: bool
    base: str | None
    regex: re.Pattern[str] | None
    system: str | None
    root_invariants: tuple[Invariant, ...]
    children: dict[str, dict[str, Element]] = field(default_factory=dict)
    # JSON name → element, for every choice form (valueQuantity → value[x]).
    json_names: dict[str, dict[str, Element]] = field(default_factory=dict)


@cache
def raw_definitions() -> Mapping[str, Any]:
    """The whole extract (parsed once)."""
    blob = files("profiles").joinpath("r4", "definitions.json.gz").read_bytes()
    data: Mapping[str, Any] = json.loads(gzip.decompress(blob))
    return data


def _invariants(raw: Mapping[str, Any]) -> tuple[Invariant, ...]:
    return tuple(
        Invariant(c["key"], c["severity"], c["human"], c["expression"])
        for c in raw.get("constraints", ())
    )


def _cap(code: str) -> str:
    return code[0].upper() + code[1:]


@cache
def structures() -> Mapping[str, Structure]:
    """Every R4 type and resource by name."""
    out: dict[str, Structure] = {}
    raw_all = raw_definitions()["structures"]
    for name, raw in raw_all.items():
        elements: dict[str, Any] = raw["elements"]
        regex = raw.get("regex")
        structure = Structure(
            name,
            raw["kind"],
            raw["abstract"],
            raw["base"],
            re.compile(regex, re.ASCII) if regex else None,  # Java regexes: \s is ASCII
            raw.get("system"),
            _invariants(elements.get(name, {})),
        )
        for path, element in elements.items():
            parent, _, child = path.rpartition(".")
            if not parent:
                continue
            ref = element.get("ref")
            target = elements.get(ref, element) if ref else element
            types = tuple(t["code"] for t in target.get("types", ()))
            targets = tuple(
                dict.fromkeys(x for t in target.get("types", ()) for x in t.get("targets", ()))
            )
            fixed = next(
                ((k, v) for k, v in element.items() if k.startswith(("fixed", "pattern"))), None
            )
            maximum = element["max"]
            definition = Element(
                name=child.removesuffix("[x]"),
                path=ref or path,
                structure=name,
                min=int(element["min"]),
                max=None if maximum == "*" else int(maximum),
                types=types,
                targets=targets,
                invariants=_invariants(target),
                fixed=fixed,
                value_set=element.get("valueSet"),
                max_length=element.get("maxLength"),
                choice=child.endswith("[x]"),
            )
            structure.children.setdefault(parent, {})[definition.name] = definition
            names = structure.json_names.setdefault(parent, {})
            if definition.choice:
                for code in types:
                    names[definition.name + _cap(code)] = definition
            else:
                names[definition.name] = definition
        out[name] = structure
    return out


@cache
def value_set_codes(url: str) -> Mapping[str, frozenset[str]] | None:
    """Codes by system of a required value set; None when the package cannot expand it."""
    expansion = raw_definitions()["valueSets"].get(url)
    if expansion is None:
        return None
    return {system: frozenset(codes) for system, codes in expansion.items()}


@cache
def all_codes(url: str) -> frozenset[str] | None:
    codes = value_set_codes(url)
    return None if codes is None else frozenset(c for cs in codes.values() for c in cs)


@cache
def core_extensions() -> frozenset[str]:
    return frozenset(raw_definitions()["extensions"])


def source() -> Mapping[str, str]:
    """Where the definitions come from (package, version, licence, FHIR build)."""
    found: Mapping[str, str] = raw_definitions()["source"]
    return found


def search_parameters() -> list[Mapping[str, Any]]:
    """HL7's R4 SearchParameters (id, url, code, base, type, expression, target)."""
    return list(raw_definitions()["searchParameters"])


def is_primitive(type_name: str) -> bool:
    found = structures().get(type_name)
    return found is not None and found.kind == "primitive-type"


def is_resource(type_name: str) -> bool:
    found = structures().get(type_name)
    return found is not None and found.kind == "resource" and not found.abstract


def json_names(resource_type: str, path: str, as_type: str | None = None) -> list[tuple[str, str]]:
    """(JSON path, type code) for a dotted element path of ``resource_type`` (``[]``: unknown).

    A choice element at the end expands to one JSON name per type (``effective`` →
    ``effectiveDateTime``, ``effectivePeriod``, …), or to the one ``as_type`` names.
    """
    all_structures = structures()
    structure = all_structures.get(resource_type)
    if structure is None:
        return []
    at = resource_type
    json_path: list[str] = []
    segments = path.split(".")
    for index, segment in enumerate(segments):
        element = structure.children.get(at, {}).get(segment)
        if element is None:
            return []
        if index == len(segments) - 1:
            prefix = ".".join(json_path)
            prefix = prefix + "." if prefix else ""
            if not element.choice:
                return [(prefix + element.name, element.types[0] if element.types else "")]
            return [
                (prefix + element.name + _cap(code), code)
                for code in element.types
                if as_type is None or code == as_type
            ]
        json_path.append(element.name)
        if element.path in structure.children:
            at = element.path
        elif element.types and element.types[0] in all_structures:
            structure = all_structures[element.types[0]]
            at = structure.name
        else:
            return []
    return []
