"""The participant directory over the database and its Organizations in the FHIR store."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gateway.auth.keys import (
    generate_encryption_key,
    generate_signing_key,
    private_key_path,
    public_jwk,
    public_jwks,
    read_private_key,
)
from gateway.errors import BadRequest, Conflict, NotFound
from gateway.participants.demo import DEMO_PARTICIPANTS, ensure_demo_participants
from gateway.participants.directory import (
    KIND_SYSTEM,
    InvalidParticipant,
    Participant,
    ParticipantDirectory,
    organization_resource,
)
from gateway.participants.identifiers import EAN, SOR
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from profiles.fhir_release import validate_resource


@pytest.fixture
def store(database: Database, settings: Settings) -> Store:
    return Store(database, fhir_base=settings.fhir_base)


@pytest.fixture
def directory(database: Database) -> ParticipantDirectory:
    return ParticipantDirectory(database)


def _participant(name: str = "test-hospital", **kwargs: object) -> Participant:
    values: dict[str, object] = {
        "kind": "hospital",
        "display": "Test Hospital",
        "identifiers": [
            {"system": SOR, "value": "123456789012"},
            {"system": "http://www.gs1.org/gln", "value": "5790000121526"},
        ],
        "jwks": public_jwks([generate_signing_key(), generate_encryption_key()]),
    }
    values.update(kwargs)
    return Participant(name, **values)  # type: ignore[arg-type]


async def test_add_get_list(directory: ParticipantDirectory, store: Store) -> None:
    added = await directory.add(_participant(), store=store)
    assert added.organization_id == "org-test-hospital"
    assert {"system": EAN, "value": "5790000121526"} in added.identifiers  # https form
    fetched = await directory.get("test-hospital")
    assert fetched == added
    assert [p.name for p in await directory.list()] == ["test-hospital"]
    assert await directory.find("nobody") is None
    with pytest.raises(NotFound):
        await directory.get("nobody")
    found = await directory.find_by_identifier("http://www.gs1.org/gln", "5790000121526")
    assert found is not None and found.name == "test-hospital"


async def test_organization_is_written_with_the_participant(
    directory: ParticipantDirectory, store: Store
) -> None:
    await directory.add(_participant(), store=store)
    org = await store.read("Organization", "org-test-hospital")
    assert org["name"] == "Test Hospital"
    assert org["type"][0]["coding"][0] == {
        "system": KIND_SYSTEM,
        "code": "hospital",
        "display": "Hospital",
    }
    assert {"system": SOR, "value": "123456789012"} in org["identifier"]


def test_organization_resources_are_valid_r4() -> None:
    for participant in DEMO_PARTICIPANTS:
        resource = organization_resource(participant)
        assert validate_resource(resource, "Organization") == resource


async def test_duplicates_are_refused(directory: ParticipantDirectory, store: Store) -> None:
    await directory.add(_participant(), store=store)
    with pytest.raises(Conflict, match="already registered"):
        await directory.add(_participant(), store=store)
    same_ean = _participant(
        "other", identifiers=[{"system": EAN, "value": "5790000121526"}], kind="gp"
    )
    with pytest.raises(Conflict, match="test-hospital"):
        await directory.add(same_ean, store=store)
    with pytest.raises(NotFound):
        await store.read("Organization", "org-other")


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"kind": "pharmacy"}, InvalidParticipant),
        ({"name": "Bad Name"}, InvalidParticipant),
        ({"name": "-x"}, InvalidParticipant),
        ({"name": "x" * 61}, InvalidParticipant),
        ({"display": " "}, InvalidParticipant),
        ({"endpoint": "ftp://x"}, InvalidParticipant),
        ({"identifiers": [{"system": EAN, "value": "5790000121527"}]}, BadRequest),
        ({"identifiers": [{"system": "http://cvr.dk", "value": "35411004"}]}, BadRequest),
        ({"jwks": {"keys": []}}, BadRequest),
        ({"jwks": {"keys": [generate_signing_key().as_dict(private=True)]}}, BadRequest),
    ],
)
async def test_invalid_registrations_are_refused(
    directory: ParticipantDirectory,
    store: Store,
    changes: dict[str, object],
    error: type[Exception],
) -> None:
    fields = dict(changes)  # parameters are shared between the database backends
    name = str(fields.pop("name", "test-hospital"))
    with pytest.raises(error):
        await directory.add(_participant(name, **fields), store=store)
    assert await directory.list() == []


async def test_rotation_keeps_previous_signing_keys(
    directory: ParticipantDirectory, store: Store
) -> None:
    added = await directory.add(_participant(), store=store)
    first_sig, enc = added.jwks["keys"]
    second, third = generate_signing_key(), generate_signing_key()
    rotated = await directory.add_signing_key(added.name, public_jwk(second), keep_previous=1)
    assert [k["kid"] for k in rotated.jwks["keys"]] == [second.kid, first_sig["kid"], enc["kid"]]
    rotated = await directory.add_signing_key(added.name, public_jwk(third), keep_previous=1)
    assert [k["kid"] for k in rotated.jwks["keys"]] == [third.kid, second.kid, enc["kid"]]
    with pytest.raises(NotFound):
        await directory.add_signing_key("nobody", public_jwk(third))


@pytest.fixture
def demo_settings(settings: Settings) -> Iterator[Settings]:
    yield settings.model_copy(update={"demo": True})


async def test_demo_seeding_is_idempotent_and_reuses_key_files(
    demo_settings: Settings, database: Database, store: Store, directory: ParticipantDirectory
) -> None:
    await ensure_demo_participants(demo_settings, database, store)
    first = {p.name: p for p in await directory.list()}
    assert set(first) == {p.name for p in DEMO_PARTICIPANTS}
    key_file = private_key_path(demo_settings.keys_dir, "jobcenter-aarhus")
    assert key_file.stat().st_mode & 0o777 == 0o600
    kid = read_private_key(key_file).kid
    assert first["jobcenter-aarhus"].jwks["keys"][0]["kid"] == kid
    assert first["borger-portal"].kind == "citizen-portal"
    org_version = (await store.read("Organization", "org-lys-montage"))["meta"]["versionId"]

    await ensure_demo_participants(demo_settings, database, store)
    assert {p.name: p for p in await directory.list()} == first
    assert read_private_key(key_file).kid == kid
    org = await store.read("Organization", "org-lys-montage")
    assert org["meta"]["versionId"] == org_version  # nothing rewritten
    assert org["name"] == "Lys & Montage ApS"


async def test_demo_seeding_registers_a_replaced_key_file(
    demo_settings: Settings, database: Database, store: Store, directory: ParticipantDirectory
) -> None:
    await ensure_demo_participants(demo_settings, database, store)
    key_file = private_key_path(demo_settings.keys_dir, "lys-montage")
    old_kid = read_private_key(key_file).kid
    os.remove(key_file)
    await ensure_demo_participants(demo_settings, database, store)
    new_kid = read_private_key(key_file).kid
    kids = [k["kid"] for k in (await directory.get("lys-montage")).jwks["keys"]]
    assert kids[0] == new_kid and old_kid in kids
