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
import logging
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy.exc import IntegrityError

from consent import AUTHOR_KIND_SYSTEM, author_of
from gateway.clock import Clock, today
from gateway.coordination.notices import notice_bundle, record_notice
from gateway.coordination.plan import push_plan_changes
from gateway.data.path import DataPath
from gateway.messaging import records
from gateway.participants.directory import (
    Participant,
    ParticipantDirectory,
    organization_id_for,
)
from gateway.settings import Settings
from gateway.store.repository import Store
from mappings._codes import identifier_system
from mappings.coordination import REFERRAL_ANSWER, TASK_OUTPUT_SYSTEM, TASK_OUTPUTS
from mappings.deadlines import (
    DEADLINE_STATUS_SYSTEM,
    DEADLINE_STATUSES,
    DEADLINE_SYSTEM,
    MET,
    MET_LATE,
    OPEN_TASK_STATUSES,
    OVERDUE,
    display,
    due_after,
)

log = logging.getLogger(__name__)

GATEWAY_SENDER = "gateway"
# The contract's message-event CodeSystem has no code for a notice; it travels as a case
# message (as the round-table invitation does, docs/messaging.md).
NOTICE_EVENT = "sickness-benefit-case"
_NAMESPACE = uuid.UUID("6f1c2f0e-3c59-4f0a-9a51-2b5d3c7e9d10")
_PAGE = 500
# A referral is answered by its status: once accepted or rejected its deadline is met.
_ANSWERED_BY_STATUS = {REFERRAL_ANSWER: frozenset({"requested", "received"})}
STATUS_NOTE = "status-note"
FINAL_NOTE = "final-note"
NOTE_DEADLINES = (STATUS_NOTE, FINAL_NOTE)
# The note deadlines of one referral, found again by this identifier (idempotent creation).
NOTE_DEADLINE_SYSTEM = identifier_system("note-deadline")


@dataclass(slots=True)
class RefreshReport:
    today: date
    checked: int = 0
    turned_overdue: list[str] = field(default_factory=list)
    notified: list[tuple[str, str]] = field(default_factory=list)  # (Task ref, participant)
    created: list[str] = field(default_factory=list)  # note deadlines of referrals
    met: list[str] = field(default_factory=list)  # note deadlines a note answered
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
    return notice_bundle(
        base=base,
        header_id=notification_id(str(task["id"]), _due(task) or ""),
        event_code=NOTICE_EVENT,
        sender=gateway,
        source_name=GATEWAY_SENDER,
        receivers=[owner],
        reason="Fristen er overskredet",
        focus=task,
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


def _code(task: dict[str, Any]) -> str | None:
    for coding in (task.get("code") or {}).get("coding") or []:
        if coding.get("system") == DEADLINE_SYSTEM:
            return str(coding.get("code"))
    return None


def _open(task: dict[str, Any]) -> bool:
    allowed = _ANSWERED_BY_STATUS.get(_code(task) or "", OPEN_TASK_STATUSES)
    return task.get("status") in allowed


def _ref(value: Any) -> str | None:
    return value.get("reference") if isinstance(value, dict) else None


def _note_deadline(referral: dict[str, Any], code: str, start: str, due: str) -> dict[str, Any]:
    """The status or final note the unit owes the job centre, in the referral's name."""
    meta = referral.get("meta") or {}
    stamped: dict[str, Any] = {"security": meta.get("security", [])}
    if meta.get("source"):
        stamped["source"] = meta["source"]
    tags = [t for t in meta.get("tag", []) if t.get("system") == AUTHOR_KIND_SYSTEM]
    if tags:
        stamped["tag"] = tags
    task: dict[str, Any] = {
        "resourceType": "Task",
        "meta": stamped,
        "identifier": [{"system": NOTE_DEADLINE_SYSTEM, "value": f"{code}-{referral['id']}"}],
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": DEADLINE_SYSTEM, "code": code, "display": display(code)}]},
        "description": display(code),
        "partOf": [{"reference": f"Task/{referral['id']}"}],
        "for": referral["for"],
        "authoredOn": start,
        "owner": referral["owner"],
        "restriction": {"period": {"start": start, "end": due}},
    }
    if (focus := _ref(referral.get("focus"))) is not None:
        task["focus"] = {"reference": focus}
        task["basedOn"] = [{"reference": focus}]
    if referral.get("requester"):
        task["requester"] = referral["requester"]
    return task


async def _follow_referrals(data: DataPath, report: RefreshReport) -> None:
    """Training started → the status note falls due in six weeks; discharge → the final note."""
    page = await data.search(
        "Task",
        [
            ("code", f"{DEADLINE_SYSTEM}|{REFERRAL_ANSWER}"),
            ("status", "in-progress,completed"),
            ("_count", str(_PAGE)),
        ],
        max_count=_PAGE,
    )
    for referral in page.result.matches:
        period = referral.get("executionPeriod") or {}
        wanted: list[tuple[str, str]] = []
        if isinstance(period.get("start"), str):
            start = period["start"][:10]
            wanted.append((STATUS_NOTE, start))
        if referral.get("status") == "completed" and isinstance(period.get("end"), str):
            wanted.append((FINAL_NOTE, period["end"][:10]))
        for code, day in wanted:
            due = due_after(code, date.fromisoformat(day)).isoformat()
            identifier = f"{NOTE_DEADLINE_SYSTEM}|{code}-{referral['id']}"
            async with data.write("note deadline") as writer:
                result = await writer.create(
                    _note_deadline(referral, code, day, due),
                    if_none_exist=f"identifier={identifier}",
                )
                if not result.matched_existing:
                    report.created.append(f"Task/{result.id}")


async def _answer_notes(data: DataPath, tasks: list[dict[str, Any]], report: RefreshReport) -> None:
    """A note (Communication ``basedOn`` its Task) from the Task's owner completes the Task."""
    for task in tasks:
        if _code(task) not in NOTE_DEADLINES or not _open(task):
            continue
        page = await data.search(
            "Communication", [("based-on", f"Task/{task['id']}"), ("_sort", "_lastUpdated")]
        )
        owner = _ref(task.get("owner"))
        notes = [
            c
            for c in page.result.matches
            if owner is not None
            and (author := author_of(c)) is not None
            and f"Organization/{organization_id_for(author)}" == owner
        ]
        if not notes:
            continue
        note = notes[0]
        sent = str(note.get("sent") or note["meta"]["lastUpdated"])[:10]
        due = _due(task) or sent
        async with data.write("note answered") as writer:
            current = await writer.read("Task", str(task["id"]))
            if current is None or not _open(current):
                continue
            answered = _without_version(current)
            answered["status"] = "completed"
            state = MET if sent <= due else MET_LATE
            answered["businessStatus"] = {
                "coding": [
                    {
                        "system": DEADLINE_STATUS_SYSTEM,
                        "code": state,
                        "display": DEADLINE_STATUSES[state],
                    }
                ]
            }
            answered["output"] = [
                {
                    "type": {
                        "coding": [
                            {
                                "system": TASK_OUTPUT_SYSTEM,
                                "code": "note",
                                "display": TASK_OUTPUTS["note"],
                            }
                        ]
                    },
                    "valueReference": {"reference": f"Communication/{note['id']}"},
                }
            ]
            await writer.put(answered)
            task.update(answered)
            report.met.append(f"Task/{task['id']}")


def _without_version(resource: dict[str, Any]) -> dict[str, Any]:
    copy = dict(resource)
    copy["meta"] = {
        k: v
        for k, v in (resource.get("meta") or {}).items()
        if k not in ("versionId", "lastUpdated")
    }
    return copy


async def refresh_deadlines(store: Store, settings: Settings, clock: Clock) -> RefreshReport:
    """One run of the job (see the module docstring); safe to run any number of times."""
    report = RefreshReport(today=today(clock))
    data = DataPath.for_operator(store)
    await _follow_referrals(data, report)
    tasks = await _open_deadlines(data)
    await _answer_notes(data, tasks, report)
    tasks = [t for t in tasks if _open(t)]
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
                if current is None or not _open(current):
                    continue  # met or withdrawn since the search
                if _due(current) != due:
                    continue  # a newer export moved it; the next run judges the new date
                if not _is_overdue_marked(current):
                    marked = _without_version(current)
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
                await record_notice(
                    writer,
                    sender=GATEWAY_SENDER,
                    message_id=message_id,
                    event=NOTICE_EVENT,
                    bundle=_notice(current, owner, base, gateway),
                    resources=[ref],
                    receivers=[owner],
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
            try:
                # The shared plans' changes go to their parties in the same rhythm.
                await push_plan_changes(store, settings)
            except Exception:
                log.exception("deadline worker: pushing plan changes failed")

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
