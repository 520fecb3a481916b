"""The deadline job: every open deadline Task judged against today, its owner told once.

A deadline whose due date (``Task.restriction.period.end``) has passed while the Task is still
open is overdue *today*, whether or not anyone exported the case again. The job

1. reads the open deadline Tasks (operator path: it is the gateway's own worker),
2. gives each one that is overdue and not yet marked ``businessStatus = overdue`` (a new
   version; the author stays the Task's own),
3. and, for every overdue Task, puts one notification message in its owner's mailbox (or on
   the way to its endpoint) through the ordinary outbound machinery: a message record from
   the gateway with the Task as its focus, one delivery to the owner. The owner reads the Task
   in it through its own guarded data path, like any forwarded message.

Idempotent: the notification's MessageHeader.id is derived from the Task and its due date
(``notification_id``) and the message table is unique per (sender, id), so running the job
again — in one process or in several at once — marks nothing twice and notifies nobody twice.
A due date moved by a newer export is a new deadline and is notified again when it passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy.exc import IntegrityError

from gateway.clock import Clock, today
from gateway.data.path import DataPath
from gateway.messaging import envelope, records
from gateway.messaging.message import (
    OUR_EVENTS,
    message_bundle,
    organization_entry,
    provenance_entry,
)
from gateway.participants.directory import Participant, ParticipantDirectory
from gateway.search.dates import format_instant, utc_now
from gateway.settings import Settings
from gateway.store.repository import Store
from mappings.deadlines import (
    DEADLINE_STATUS_SYSTEM,
    DEADLINE_STATUSES,
    DEADLINE_SYSTEM,
    OPEN_TASK_STATUSES,
    OVERDUE,
)

log = logging.getLogger(__name__)

GATEWAY_SENDER = "gateway"
# The contract's message-event CodeSystem has no code for a notice; it travels as a case
# message (as the round-table invitation does, docs/messaging.md).
NOTICE_EVENT = "sickness-benefit-case"
_NAMESPACE = uuid.UUID("6f1c2f0e-3c59-4f0a-9a51-2b5d3c7e9d10")
_PAGE = 500


@dataclass(slots=True)
class RefreshReport:
    today: date
    checked: int = 0
    turned_overdue: list[str] = field(default_factory=list)
    notified: list[tuple[str, str]] = field(default_factory=list)  # (Task ref, participant)
    unowned: list[str] = field(default_factory=list)  # owner is no registered participant


def notification_id(task_id: str, due: str) -> str:
    """The MessageHeader.id of the overdue notice of one Task's one due date."""
    return str(uuid.uuid5(_NAMESPACE, f"overdue|Task/{task_id}|{due}"))


def _due(task: dict[str, Any]) -> str | None:
    end = ((task.get("restriction") or {}).get("period") or {}).get("end")
    return end[:10] if isinstance(end, str) else None


def _is_overdue_marked(task: dict[str, Any]) -> bool:
    codings = (task.get("businessStatus") or {}).get("coding") or []
    return any(
        c.get("system") == DEADLINE_STATUS_SYSTEM and c.get("code") == OVERDUE for c in codings
    )


async def _open_deadlines(data: DataPath) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    offset = 0
    for _ in range(10_000):  # bounded: at most five million open deadlines per run
        page = await data.search(
            "Task",
            [
                ("code", f"{DEADLINE_SYSTEM}|"),
                ("status", ",".join(sorted(OPEN_TASK_STATUSES))),
                ("_sort", "_id"),
                ("_count", str(_PAGE)),
                ("_offset", str(offset)),
            ],
            max_count=_PAGE,
        )
        found += page.result.matches
        if not page.result.has_more:
            break
        offset += _PAGE
    return found


def _notice(
    task: dict[str, Any], owner: Participant, base: str, gateway: Participant
) -> dict[str, Any]:
    header_id = notification_id(str(task["id"]), _due(task) or "")
    moment = format_instant(utc_now())
    sender_entry = organization_entry(gateway, base)
    receiver_entry = organization_entry(owner, base)
    task_url = f"{base}/Task/{task['id']}"
    header_url = f"urn:uuid:{header_id}"
    header = {
        "resourceType": "MessageHeader",
        "id": header_id,
        "eventCoding": {"system": OUR_EVENTS, "code": NOTICE_EVENT},
        "destination": [
            {
                "endpoint": owner.endpoint or f"{base}/mailbox/{owner.name}",
                "receiver": {"reference": receiver_entry["fullUrl"]},
            }
        ],
        "sender": {"reference": sender_entry["fullUrl"]},
        "source": {"endpoint": f"{base}/participant/{GATEWAY_SENDER}"},
        "reason": {"text": "Fristen er overskredet"},
        "focus": [{"reference": task_url}],
    }
    provenance = provenance_entry(
        base=base,
        header_url=header_url,
        agent_url=sender_entry["fullUrl"],
        activity="new-message",
        moment=moment,
    )
    return message_bundle(
        moment,
        [
            {"fullUrl": header_url, "resource": header},
            {"fullUrl": task_url, "resource": task},
            provenance,
            sender_entry,
            receiver_entry,
        ],
    )


def _gateway_party(settings: Settings) -> Participant:
    return Participant(
        name=GATEWAY_SENDER,
        kind="gateway",
        display="Brobygger",
        identifiers=[],
        organization_id=None,
        jwks={"keys": []},
        endpoint=None,
    )


async def refresh_deadlines(store: Store, settings: Settings, clock: Clock) -> RefreshReport:
    """One run of the job (see the module docstring); safe to run any number of times."""
    report = RefreshReport(today=today(clock))
    data = DataPath.for_operator(store)
    tasks = await _open_deadlines(data)
    report.checked = len(tasks)
    by_org = {
        f"Organization/{p.organization_id}": p
        for p in await ParticipantDirectory(store.database).list()
        if p.organization_id
    }
    base = settings.fhir_base
    gateway = _gateway_party(settings)
    for task in tasks:
        due = _due(task)
        if due is None or date.fromisoformat(due) >= report.today:
            continue
        ref = f"Task/{task['id']}"
        owner = by_org.get(str((task.get("owner") or {}).get("reference", "")))
        try:
            async with data.write("deadline refresh") as writer:
                current = await writer.read("Task", str(task["id"]))
                if current is None or current.get("status") not in OPEN_TASK_STATUSES:
                    continue  # met or withdrawn since the search
                if _due(current) != due:
                    continue  # a newer export moved it; the next run judges the new date
                if not _is_overdue_marked(current):
                    marked = {k: v for k, v in current.items() if k != "meta"}
                    marked["meta"] = {
                        k: v
                        for k, v in (current.get("meta") or {}).items()
                        if k not in ("versionId", "lastUpdated")
                    }
                    marked["businessStatus"] = {
                        "coding": [
                            {
                                "system": DEADLINE_STATUS_SYSTEM,
                                "code": OVERDUE,
                                "display": DEADLINE_STATUSES[OVERDUE],
                            }
                        ]
                    }
                    result = await writer.put(marked)
                    current = result.resource
                    report.turned_overdue.append(ref)
                if owner is None:
                    report.unowned.append(ref)
                    continue
                message_id = notification_id(str(task["id"]), due)
                if await records.find_message(writer.conn, GATEWAY_SENDER, message_id):
                    continue
                bundle = _notice(current, owner, base, gateway)
                canonical = envelope.canonical_json(bundle)
                record = records.MessageRecord(
                    key=str(uuid.uuid4()),
                    sender=GATEWAY_SENDER,
                    message_id=message_id,
                    event=NOTICE_EVENT,
                    received_at=utc_now(),
                    content_sha256=hashlib.sha256(canonical).hexdigest(),
                    bundle=bundle,
                    signed="",
                    ack_code="ok",
                    ack={},
                    resources=[ref],
                    reply_to=None,
                )
                await records.insert_message(writer, record)
                await records.insert_delivery(
                    writer,
                    record.key,
                    owner.name,
                    role="primary",
                    mode="endpoint" if owner.endpoint else "mailbox",
                )
                report.notified.append((ref, owner.name))
        except IntegrityError:
            # Another process notified the same deadline at the same moment: once is enough.
            log.info("deadline %s: notified by another worker", ref)
    return report


class RunningDeadlineWorker:
    """``refresh_deadlines`` every ``deadline_poll_seconds`` in this process (the lifespan's)."""

    def __init__(self, store: Store, settings: Settings, clock: Clock) -> None:
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            self._run(store, settings, clock), name="deadline-worker"
        )

    async def _run(self, store: Store, settings: Settings, clock: Clock) -> None:
        # The first round after one interval: a process that just started has nothing new
        # to judge that the previous one (or ``brobygger deadlines refresh``) did not.
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), settings.deadline_poll_seconds)
            if self.stopping.is_set():
                break
            try:
                await refresh_deadlines(store, settings, clock)
            except Exception:  # the store is down, …: try again next round
                log.exception("deadline worker: a round failed")

    async def stop(self) -> None:
        self.stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 5)
        except TimeoutError:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def start_deadline_worker(store: Store, settings: Settings, clock: Clock) -> RunningDeadlineWorker:
    return RunningDeadlineWorker(store, settings, clock)
