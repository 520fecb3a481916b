"""Demo participants for ``make run`` and the tests, with dev keys under ``keys_dir``.

Identifiers and display names follow the sample documents in ``formats/samples/`` so that the
samples can be sent between these participants. Seeding is idempotent: on restart existing
rows and key files are reused; a key file that is missing or unknown to the directory is
(re)registered.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from gateway.auth.keys import load_or_create_key, private_key_path, public_jwk, public_jwks
from gateway.errors import Conflict
from gateway.participants.directory import Participant, ParticipantDirectory
from gateway.participants.identifiers import CVR, EAN, MUNICIPALITY, SOR, YDER
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store

log = logging.getLogger(__name__)


def _ids(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"system": system, "value": value} for system, value in pairs]


DEMO_PARTICIPANTS: tuple[Participant, ...] = (
    Participant(
        "auh-ortopaedi",
        "hospital",
        "Aarhus Universitetshospital, Ortopædkirurgi",
        _ids((SOR, "265161000016000"), (EAN, "5790000121526")),
    ),
    Participant(
        "sjaellands-uh-ryg",
        "hospital",
        "Sjællands Universitetshospital, Roskilde, Rygkirurgisk afdeling",
        _ids((SOR, "320781000016003"), (EAN, "5790000543212")),
    ),
    Participant(
        "aarhus-genoptraening",
        "rehab-unit",
        "Aarhus Kommune, Sundhed og Omsorg, Genoptræning",
        _ids((SOR, "521451000016006"), (EAN, "5790000168736"), (MUNICIPALITY, "0751")),
    ),
    Participant(
        "roskilde-traening",
        "rehab-unit",
        "Roskilde Kommune, Træning og Sundhed",
        _ids((SOR, "414981000016001"), (EAN, "5790000876549"), (MUNICIPALITY, "0265")),
    ),
    Participant(
        "jobcenter-aarhus",
        "jobcentre",
        "Jobcenter Aarhus, Sygedagpenge",
        _ids((EAN, "5790000234561"), (MUNICIPALITY, "0751")),
    ),
    Participant(
        "jobcenter-roskilde",
        "jobcentre",
        "Jobcenter Roskilde, Sygedagpengeafsnittet",
        _ids((EAN, "5790000111114"), (MUNICIPALITY, "0265")),
    ),
    Participant(
        "laegerne-soendergade",
        "gp",
        "Lægerne Søndergade",
        _ids((YDER, "045612"), (EAN, "5790000987658")),
    ),
    Participant(
        "laegehuset-roskilde",
        "gp",
        "Lægehuset Roskilde Bymidte",
        _ids((YDER, "033001")),
    ),
    Participant(
        "lys-montage",
        "employer",
        "Lys & Montage ApS",
        _ids((CVR, "35411003")),
    ),
    Participant(
        "roskilde-hjemmepleje",
        "employer",
        "Roskilde Kommune, Hjemmeplejen Syd",
        _ids((CVR, "29421005")),
    ),
    Participant(
        "borger-portal",
        "citizen-portal",
        "Brobygger borgerportal",
        [],
    ),
)


async def ensure_demo_participants(settings: Settings, database: Database, store: Store) -> None:
    """Create the demo participants (dev signing + encryption keys) unless they exist."""
    directory = ParticipantDirectory(database)
    for template in DEMO_PARTICIPANTS:
        signing = load_or_create_key(private_key_path(settings.keys_dir, template.name))
        encryption = load_or_create_key(
            private_key_path(settings.keys_dir, template.name, use="enc"), use="enc"
        )
        existing = await directory.find(template.name)
        if existing is None:
            wanted = replace(template, jwks=public_jwks([signing, encryption]))
            try:
                await directory.add(wanted, store=store)
                log.info("demo participant %s registered", template.name)
                continue
            except Conflict:  # another gateway process seeded it just now
                existing = await directory.find(template.name)
                if existing is None:
                    raise  # an identifier is taken by a participant registered by hand
        registered = {k.get("kid") for k in existing.jwks.get("keys", [])}
        if signing.kid not in registered:
            # The key file was replaced (e.g. var/keys wiped): register it as the new key.
            existing = await directory.add_signing_key(template.name, public_jwk(signing))
            log.info("demo participant %s: signing key file re-registered", template.name)
        if encryption.kid not in registered:
            keys = [k for k in existing.jwks["keys"] if k.get("use", "sig") == "sig"]
            existing = await directory.set_jwks(
                template.name, {"keys": [*keys, public_jwk(encryption)]}
            )
            log.info("demo participant %s: encryption key file re-registered", template.name)
        await directory.sync_organization(existing, store=store)
