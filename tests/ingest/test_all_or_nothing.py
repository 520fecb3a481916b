"""Property: a mutated document through the pipeline into a real store is stored whole or not
at all, and the pipeline answers with a result or a GatewayError, never another exception.

Besides the mutations (which the adapters mostly refuse), a fault is injected at a drawn
write of the transaction, standing in for a database failure half-way through.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_support import all_samples, row_counts
from lxml import etree

from gateway.errors import GatewayError, StoreUnavailable
from gateway.ingest import ingest
from gateway.store.repository import Store, Writer

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
DOCUMENTS = [p.read_bytes() for p in all_samples()]
TEXTS = st.one_of(
    st.sampled_from(["", "0", "38", "2026-02-30", "2026-12-01", "2027-01-01T10:00:00+01:00"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20),
)


def _mutate(raw: bytes, data: st.DataObject) -> bytes:
    root = etree.fromstring(raw)
    for _ in range(data.draw(st.integers(0, 3), label="mutations")):
        elements = list(root.iter())
        target = elements[data.draw(st.integers(0, len(elements) - 1), label="element")]
        parent = target.getparent()
        action = data.draw(st.sampled_from(["drop", "duplicate", "text"]), label="action")
        if action == "drop" and parent is not None:
            parent.remove(target)
        elif action == "duplicate" and parent is not None:
            parent.insert(parent.index(target), copy.deepcopy(target))
        elif action == "text" and len(target) == 0:
            target.text = data.draw(TEXTS, label="text")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


async def _exists(store: Store, location: str) -> bool:
    # Type/id/_history/version; an identity linked without disclosure is Type/id alone.
    rtype, rid, *rest = location.split("/")
    try:
        stored = await store.read(rtype, rid)
    except GatewayError:
        return False
    return not rest or int(stored["meta"]["versionId"]) >= int(rest[-1])


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_a_document_is_stored_whole_or_not_at_all(store: Store, data: st.DataObject) -> None:
    document = _mutate(data.draw(st.sampled_from(DOCUMENTS), label="document"), data)
    fail_at = data.draw(st.one_of(st.none(), st.integers(0, 25)), label="fail at write")
    before = await row_counts(store)
    original_put = Writer.put
    writes = 0

    async def faulty_put(self: Writer, resource: dict[str, Any], **kwargs: Any) -> Any:
        nonlocal writes
        if fail_at is not None and writes == fail_at:
            raise StoreUnavailable("injected failure")
        writes += 1
        return await original_put(self, resource, **kwargs)

    Writer.put = faulty_put  # type: ignore[method-assign]
    try:
        result = await ingest(store, document, sender_participant=None, now=NOW)
    except GatewayError as error:
        assert error.issues
        assert await row_counts(store) == before, "a refused document left something behind"
        return
    finally:
        Writer.put = original_put  # type: ignore[method-assign]
    locations = [e["response"]["location"] for e in result.response["entry"]]
    assert all([await _exists(store, loc) for loc in locations])
    if result.status == "unchanged":
        assert await row_counts(store) == before
    else:
        assert any(loc.startswith("DocumentReference/") for loc in locations)
