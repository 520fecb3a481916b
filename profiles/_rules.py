"""Our resource profiles compiled for checking: cardinalities and FHIRPath constraints.

Each StructureDefinition's differential is read once; every FHIRPath expression goes through
``compile_expression`` (fhirpathpy.compile, cached), so validation never parses an expression.
Only ``min``/``max`` and ``constraint`` carry rules here; ``check_supported`` refuses a
definition that uses anything else, so no rule in the JSON is silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import fhirpathpy
from fhirpathpy.models import models

from profiles._registry import Resource, registry
from profiles._report import Severity, ValidationIssue

Evaluator = Callable[..., list[Any]]

_R4 = models["r4"]
# Element properties that describe rather than constrain.
_DESCRIPTIVE = frozenset({"id", "path", "short", "definition", "comment", "mustSupport"})
_RULES = frozenset({"min", "max", "constraint"})


@cache
def compile_expression(expression: str, *, raw: bool = False) -> Evaluator:
    """fhirpathpy's compiled form of ``expression`` (``raw``: nodes keep their FHIR type)."""
    options = {"returnRawData": True} if raw else None
    compiled: Evaluator = fhirpathpy.compile(expression, _R4, options)
    return compiled


def _fhirpath(path: str) -> str:
    # ElementDefinition paths name choice elements "value[x]"; FHIRPath says "value".
    return path.replace("[x]", "")


@dataclass(frozen=True, slots=True)
class Cardinality:
    path: str
    parent: str
    child: str
    min: int
    max: int | None


@dataclass(frozen=True, slots=True)
class Constraint:
    key: str
    severity: Severity
    human: str
    path: str
    expression: str


@dataclass(frozen=True, slots=True)
class Profile:
    url: str
    version: str
    name: str
    type: str
    cardinalities: tuple[Cardinality, ...]
    constraints: tuple[Constraint, ...]

    @property
    def canonical(self) -> str:
        return f"{self.url}|{self.version}"


def check_supported(definition: Resource) -> None:
    """Raise when the differential uses a property this validator does not enforce."""
    for element in definition["differential"]["element"]:
        unknown = set(element) - _DESCRIPTIVE - _RULES
        if unknown:
            raise ValueError(
                f"{definition['url']}: {element['path']} uses {sorted(unknown)}, "
                "which profiles/ does not enforce"
            )


def _compile(definition: Resource) -> Profile:
    check_supported(definition)
    resource_type = definition["type"]
    cardinalities: list[Cardinality] = []
    constraints: list[Constraint] = []
    for element in definition["differential"]["element"]:
        path = element["path"]
        if "min" in element or "max" in element:
            parent, _, child = path.rpartition(".")
            maximum = element.get("max", "*")
            cardinalities.append(
                Cardinality(
                    path,
                    parent,
                    child,
                    int(element.get("min", 0)),
                    None if maximum == "*" else int(maximum),
                )
            )
            compile_expression(_fhirpath(child))
            if parent != resource_type:
                compile_expression(_fhirpath(parent), raw=True)
        for rule in element.get("constraint", []):
            constraints.append(
                Constraint(rule["key"], rule["severity"], rule["human"], path, rule["expression"])
            )
            compile_expression(rule["expression"])
            if path != resource_type:
                compile_expression(_fhirpath(path), raw=True)
    return Profile(
        definition["url"],
        definition["version"],
        definition["name"],
        resource_type,
        tuple(cardinalities),
        tuple(constraints),
    )


@cache
def profiles() -> Mapping[str, Profile]:
    """Our resource profiles by ``url`` and ``url|version``, compiled once."""
    out: dict[str, Profile] = {}
    for canonical, definition in registry().by_canonical.items():
        if definition["resourceType"] == "StructureDefinition" and definition["kind"] == "resource":
            out[canonical] = _compile(definition)
    return out


def _nodes(resource: Resource, path: str, resource_type: str) -> list[Any]:
    if path == resource_type:
        return [resource]
    return compile_expression(_fhirpath(path), raw=True)(resource, {})


def _where(path: str, index: int, count: int) -> str:
    return f"{path}[{index}]" if count > 1 else path


def check_profile(profile: Profile, resource: Resource) -> list[ValidationIssue]:
    """Cardinalities and constraints of ``profile`` on ``resource`` (already valid R4)."""
    issues: list[ValidationIssue] = []
    env = {"resource": resource, "rootResource": resource}
    for rule in profile.cardinalities:
        parents = _nodes(resource, rule.parent, profile.type)
        child = compile_expression(_fhirpath(rule.child))
        for index, parent in enumerate(parents):
            found = len(child(parent, env))
            where = f"{_where(rule.parent, index, len(parents))}.{rule.child}"
            if found < rule.min:
                issues.append(
                    ValidationIssue(
                        "error",
                        "required",
                        where,
                        f"{profile.name}: {rule.path} is required (min {rule.min})",
                    )
                )
            elif rule.max is not None and found > rule.max:
                issues.append(
                    ValidationIssue(
                        "error",
                        "structure",
                        where,
                        f"{profile.name}: {rule.path} allows at most {rule.max}",
                    )
                )
    for constraint in profile.constraints:
        nodes = _nodes(resource, constraint.path, profile.type)
        check = compile_expression(constraint.expression)
        for index, node in enumerate(nodes):
            where = _where(constraint.path, index, len(nodes))
            try:
                passed = check(node, env) == [True]
            except Exception:  # an engine failure is reported, never raised
                issues.append(
                    ValidationIssue(
                        "error",
                        "exception",
                        where,
                        f"{constraint.key}: the rule could not be evaluated",
                        constraint.key,
                    )
                )
                continue
            if not passed:
                issues.append(
                    ValidationIssue(
                        constraint.severity,
                        "invariant",
                        where,
                        f"{constraint.key}: {constraint.human}",
                        constraint.key,
                    )
                )
    return issues
