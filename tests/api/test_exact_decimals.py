"""Decimals keep the bytes the client sent, on every read path and both stores (issue 14)."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from profiles import fhir_json

# Each value as written; Python's json would read them back as 0.4, 1.0 and 1e-245.
VALUES = ("0.40", "1.00", "1.000000000000000000E-245", "-1.000000000000000000E+245", "0.0000001")
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _observation(value: str) -> str:
    return (
        '{"resourceType":"Observation","status":"final","code":{"text":"lab"},'
        f'"valueQuantity":{{"value":{value},"unit":"mg"}}}}'
    )


def _values(text: str) -> list[str]:
    return re.findall(r'"valueQuantity":\{"value":([^,}]+)', text)


@pytest.mark.parametrize("value", VALUES)
def test_a_decimal_reads_back_byte_identical_everywhere(client: TestClient, value: str) -> None:
    created = client.post("/fhir/Observation", content=_observation(value), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    assert _values(created.text) == [value]
    rid = created.json()["id"]
    assert _values(client.get(f"/fhir/Observation/{rid}").text) == [value]
    assert _values(client.get(f"/fhir/Observation/{rid}/_history/1").text) == [value]
    assert _values(client.get("/fhir/Observation", params={"_id": rid}).text) == [value]
    assert _values(client.get(f"/fhir/Observation/{rid}/_history").text) == [value]
    assert _values(client.get("/fhir/Observation/_history").text) == [value]
    # An update keeps the new bytes, and the old version keeps the old ones.
    body = _observation("2.50").replace("{", f'{{"id":"{rid}",', 1)
    updated = client.put(f"/fhir/Observation/{rid}", content=body, headers=FHIR_JSON)
    assert updated.status_code == 200, updated.text
    assert _values(client.get(f"/fhir/Observation/{rid}").text) == ["2.50"]
    assert _values(client.get(f"/fhir/Observation/{rid}/_history/1").text) == [value]


def test_a_change_of_precision_alone_is_a_new_version(client: TestClient) -> None:
    created = client.post("/fhir/Observation", content=_observation("0.4"), headers=FHIR_JSON)
    rid = created.json()["id"]
    body = _observation("0.40").replace("{", f'{{"id":"{rid}",', 1)
    updated = client.put(f"/fhir/Observation/{rid}", content=body, headers=FHIR_JSON)
    assert updated.status_code == 200, updated.text
    assert updated.json()["meta"]["versionId"] == "2"
    assert _values(client.get(f"/fhir/Observation/{rid}").text) == ["0.40"]


def test_a_transaction_keeps_decimals(client: TestClient) -> None:
    entries = ",".join(
        f'{{"fullUrl":"urn:uuid:0000000{i}-0000-4000-8000-000000000000","resource":{_observation(v)},'
        '"request":{"method":"POST","url":"Observation"}}'
        for i, v in enumerate(VALUES)
    )
    bundle = f'{{"resourceType":"Bundle","type":"transaction","entry":[{entries}]}}'
    answer = client.post("/fhir", content=bundle, headers=FHIR_JSON)
    assert answer.status_code == 200, answer.text
    found = _values(client.get("/fhir/Observation", params={"_count": "50"}).text)
    assert sorted(found) == sorted(VALUES)


def test_fhir_json_round_trips_text_and_compares_by_value() -> None:
    text = '{"a":[0.40,1.00,1.000000000000000000E-245,1e5,5,-0.0]}'
    parsed = fhir_json.loads(text)
    assert fhir_json.dumps(parsed) == text
    assert parsed["a"][0] == parsed["a"][0].__class__("0.4")  # by value
    assert parsed["a"][1] < 2 and parsed["a"][3] == 100000


@pytest.mark.xfail(
    strict=True,
    reason="no number or quantity search parameter is supported yet (value-quantity needs a "
    "quantity index: a migration); when added it must compare by value (0.4 finds 0.40)",
)
def test_a_quantity_search_compares_by_value(client: TestClient) -> None:
    created = client.post("/fhir/Observation", content=_observation("0.40"), headers=FHIR_JSON)
    assert created.status_code == 201
    found = client.get("/fhir/Observation", params={"value-quantity": "0.4"})
    assert found.status_code == 200, found.text
    assert _values(found.text) == ["0.40"]
