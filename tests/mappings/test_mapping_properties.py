"""Property: mutated valid documents give a valid Bundle or a MappingError, nothing else."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from mapping_support import NOW, golden_cases

from mappings import MappingError, map_document
from profiles.fhir_release import validate_resource

INPUTS: dict[str, list[bytes]] = {}
for case in golden_cases():
    INPUTS.setdefault(case.parent.name, []).append((case / "input.xml").read_bytes())

TEXTS = st.one_of(
    st.just(""),
    st.just(" "),
    st.sampled_from(["0", "-1", "38", "5", "2026-02-30", "2026-10-01", "true", "DF432", "ja"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30),
)


def _mutate(raw: bytes, data: st.DataObject) -> bytes:
    root = etree.fromstring(raw)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        elements = list(root.iter())
        target = elements[data.draw(st.integers(0, len(elements) - 1), label="element")]
        parent = target.getparent()
        action = data.draw(
            st.sampled_from(["drop", "duplicate", "reorder", "text", "attribute"]), label="action"
        )
        if action == "drop" and parent is not None:
            parent.remove(target)
        elif action == "duplicate" and parent is not None:
            parent.insert(parent.index(target), copy.deepcopy(target))
        elif action == "reorder" and parent is not None and len(parent) > 1:
            parent.remove(target)
            parent.insert(data.draw(st.integers(0, len(parent)), label="position"), target)
        elif action == "text":
            target.text = data.draw(TEXTS, label="text")
        elif action == "attribute" and target.attrib:
            name = data.draw(st.sampled_from(sorted(target.attrib)), label="attribute")
            target.set(name, data.draw(TEXTS, label="value"))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@pytest.mark.parametrize("adapter", sorted(INPUTS))
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutations_give_a_valid_bundle_or_a_mapping_error(
    adapter: str, data: st.DataObject
) -> None:
    raw = data.draw(st.sampled_from(INPUTS[adapter]), label="document")
    mutated = _mutate(raw, data)
    try:
        result = map_document(mutated, now=NOW)
    except MappingError as error:
        assert error.issues
        assert any(i.severity in ("error", "fatal") for i in error.issues)
        return
    assert validate_resource(result.bundle, "Bundle") == result.bundle


def test_inputs_cover_every_adapter() -> None:
    assert sorted(INPUTS) == ["gp-statement", "jobcentre-case", "rehab-plan"]
