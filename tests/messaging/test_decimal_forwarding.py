"""A forwarded copy carries each decimal exactly as the sender wrote it (issue 14), both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from joserfc import jwe, jws
from joserfc.jwk import import_key

from gateway.messaging.keys import gateway_signing_key
from gateway.messaging.outbound import seal_for
from gateway.settings import Settings
from profiles import fhir_json
from tests.messaging.test_outbound import (
    HOSPITAL,
    REHAB,
    Env,
    labelled,
    make_env,
    patient,
    private_key,
    store_message,
)

VALUES = ("0.40", "1.00", "1.000000000000000000E-245")


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[Env]:
    made = await make_env(settings)
    yield made
    await made.database.dispose()


def _observation(rid: str, value: str) -> dict[str, object]:
    text = (
        '{"resourceType":"Observation","id":"RID","status":"final","code":{"text":"lab"},'
        '"subject":{"reference":"Patient/ole"},"valueQuantity":{"value":VALUE,"unit":"mg"}}'
    )
    parsed = fhir_json.loads(text.replace("RID", rid).replace("VALUE", value))
    return labelled(parsed, author=HOSPITAL, addressees=(REHAB,), labels=("rehab-plan",))


async def test_the_forwarded_copy_has_the_senders_decimal_bytes(env: Env) -> None:
    observations = [_observation(f"obs-{i}", v) for i, v in enumerate(VALUES)]
    record = await store_message(
        env, sender=HOSPITAL, receivers=[(REHAB, "primary")], stored=[patient(), *observations]
    )
    token = await seal_for(env.store, env.settings, record, await env.participant(REHAB))
    assert token is not None
    plain = jwe.decrypt_compact(token, private_key(env.settings, REHAB, "enc")).plaintext
    assert plain is not None
    public = import_key(gateway_signing_key(env.settings).as_dict(private=False))
    payload = jws.deserialize_compact(plain, public).payload.decode("utf-8")
    for value in VALUES:
        assert f'"valueQuantity":{{"value":{value},' in payload, value
