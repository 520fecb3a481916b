"""Codes from our CodeSystems and our extensions, checked wherever they occur in a resource.

A Coding whose ``system`` is one of our complete CodeSystems must use a code it defines; an
extension under our StructureDefinition base must be one we define, on a resource type its
context allows, with the value type it declares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from profiles._registry import CODE_SYSTEM_BASE, STRUCTURE_DEFINITION_BASE, Resource, registry
from profiles._report import ValidationIssue


@dataclass(frozen=True, slots=True)
class ExtensionRule:
    url: str
    contexts: frozenset[str]
    value_keys: frozenset[str]  # "valueBoolean", ...; empty for a complex extension
    parts: Mapping[str, frozenset[str]]  # sub-extension url → its value keys
    required_parts: frozenset[str]


def _value_keys(element: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(
        "value" + t["code"][:1].upper() + t["code"][1:] for t in element.get("type", [])
    )


def _extension_rule(definition: Resource) -> ExtensionRule:
    elements = definition["differential"]["element"]
    value_keys: frozenset[str] = frozenset()
    parts: dict[str, frozenset[str]] = {}
    required: set[str] = set()
    slices: dict[str, str] = {}  # element id prefix → sub-extension url
    for element in elements:
        element_id = element["id"]
        if element_id == "Extension.value[x]":
            value_keys = _value_keys(element)
        elif element.get("sliceName"):
            slices[element_id] = element["sliceName"]
            if element.get("min", 0) >= 1:
                required.add(element["sliceName"])
    for element in elements:
        prefix, _, last = element["id"].rpartition(".")
        if prefix in slices and last == "url":
            slices[prefix] = element["fixedUri"]
    for element in elements:
        prefix, _, last = element["id"].rpartition(".")
        if prefix in slices and last == "value[x]":
            parts[slices[prefix]] = _value_keys(element)
    return ExtensionRule(
        definition["url"],
        frozenset(c["expression"] for c in definition.get("context", [])),
        value_keys,
        parts,
        frozenset(required),
    )


@cache
def _extensions() -> Mapping[str, ExtensionRule]:
    return {
        d["url"]: _extension_rule(d)
        for d in registry().of_type("StructureDefinition")
        if d["type"] == "Extension"
    }


@cache
def code_systems() -> Mapping[str, frozenset[str]]:
    """Our complete CodeSystems: url → the codes they define."""
    return {
        cs["url"]: frozenset(c["code"] for c in cs.get("concept", []))
        for cs in registry().of_type("CodeSystem")
        if cs["content"] == "complete"
    }


def _keys(value: Mapping[str, Any], prefix: str) -> list[str]:
    return [k for k in value if k.startswith(prefix) and k[len(prefix) : len(prefix) + 1].isupper()]


def _check_extension(
    extension: Mapping[str, Any], path: str, owner: str | None, issues: list[ValidationIssue]
) -> None:
    url = extension.get("url")
    if not isinstance(url, str) or not url.startswith(STRUCTURE_DEFINITION_BASE):
        return
    rule = _extensions().get(url)
    if rule is None:
        issues.append(ValidationIssue("warning", "not-supported", path, f"unknown extension {url}"))
        return
    if owner not in rule.contexts:
        allowed = ", ".join(sorted(rule.contexts))
        issues.append(
            ValidationIssue("error", "structure", path, f"extension {url} belongs on {allowed}")
        )
    values = _keys(extension, "value")
    if rule.parts:
        if values:
            issues.append(
                ValidationIssue("error", "structure", path, f"extension {url} has no value[x]")
            )
        seen: set[str] = set()
        for index, part in enumerate(extension.get("extension", [])):
            here = f"{path}.extension[{index}]"
            part_url = part.get("url")
            if part_url not in rule.parts or part_url in seen:
                issues.append(
                    ValidationIssue(
                        "error", "structure", here, f"extension {url}: unexpected or repeated part"
                    )
                )
                continue
            seen.add(part_url)
            part_values = _keys(part, "value")
            if len(part_values) != 1 or part_values[0] not in rule.parts[part_url]:
                issues.append(
                    ValidationIssue(
                        "error", "structure", here, f"extension {url}: {part_url} has a wrong type"
                    )
                )
        for missing in sorted(rule.required_parts - seen):
            issues.append(
                ValidationIssue(
                    "error", "required", path, f"extension {url}: part {missing} is required"
                )
            )
    elif len(values) != 1 or values[0] not in rule.value_keys:
        expected = " or ".join(sorted(rule.value_keys))
        issues.append(
            ValidationIssue("error", "structure", path, f"extension {url} needs {expected}")
        )


def check_codes_and_extensions(resource: Resource, path: str) -> list[ValidationIssue]:
    """Walk ``resource`` (Bundle entries included) and check our codes and extensions."""
    issues: list[ValidationIssue] = []
    systems = code_systems()
    shipped = {cs["url"] for cs in registry().of_type("CodeSystem")}

    def walk(value: Any, here: str) -> None:
        if isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{here}[{index}]")
            return
        if not isinstance(value, dict):
            return
        resource_type = value.get("resourceType")
        system = value.get("system")
        if isinstance(system, str) and system in systems and "code" in value:
            if value["code"] not in systems[system]:
                issues.append(
                    ValidationIssue(
                        "error", "code-invalid", f"{here}.code", f"not a code of {system}"
                    )
                )
        elif (
            isinstance(system, str)
            and system.startswith(CODE_SYSTEM_BASE)
            and system not in shipped
        ):
            # Ours by name but not shipped: a CodeSystem someone forgot to publish.
            issues.append(
                ValidationIssue(
                    "warning", "not-supported", f"{here}.system", f"no CodeSystem {system} here"
                )
            )
        for key, child in value.items():
            if key == "extension" and isinstance(child, list):
                # Our extensions sit on the resource itself: elsewhere the context is None.
                context = resource_type if isinstance(resource_type, str) else None
                for index, extension in enumerate(child):
                    if isinstance(extension, dict):
                        _check_extension(extension, f"{here}.extension[{index}]", context, issues)
            walk(child, f"{here}.{key}")

    walk(resource, path)
    return issues
