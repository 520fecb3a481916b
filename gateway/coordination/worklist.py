"""A participant's worklist: its open Tasks by due date, read through its own guarded path."""

from __future__ import annotations

from datetime import date
from typing import Any

from gateway.data.path import DataPath, principal_for
from gateway.participants.directory import Participant
from gateway.store.repository import Store
from mappings.deadlines import DEADLINE_STATUS_SYSTEM, OPEN_TASK_STATUSES

WORKLIST_LIMIT = 500


def worklist_query(
    participant: Participant,
    *,
    today: date,
    overdue: bool,
    until: date | None,
    waiting: bool = False,
) -> list[tuple[str, str]]:
    """The FHIR search a worklist is (the same one a client sends to ``GET /fhir/Task``):
    what the participant owns, or with ``waiting`` what it requested from others (a
    caseworker's notes due from the rehabilitation unit)."""
    query = [
        ("requester" if waiting else "owner", f"Organization/{participant.organization_id}"),
        ("status", ",".join(sorted(OPEN_TASK_STATUSES))),
        ("_sort", "period"),
        ("_count", str(WORKLIST_LIMIT)),
    ]
    if overdue:
        query.append(("period", f"lt{today.isoformat()}"))
    elif until is not None:
        query.append(("period", f"le{until.isoformat()}"))
    return query


async def worklist(
    store: Store,
    participant: Participant,
    *,
    today: date,
    overdue: bool = False,
    until: date | None = None,
    waiting: bool = False,
    enforce: bool = True,
) -> list[dict[str, Any]]:
    data = DataPath(store, principal_for(participant), enforce=enforce)
    page = await data.search(
        "Task",
        worklist_query(participant, today=today, overdue=overdue, until=until, waiting=waiting),
        max_count=WORKLIST_LIMIT,
    )
    return page.result.matches


def row(task: dict[str, Any], today: date) -> tuple[str, str, str, str, str, str]:
    """due, status, state, what, for whom, id — for a table."""
    due = str(((task.get("restriction") or {}).get("period") or {}).get("end", ""))[:10]
    state = ""
    for coding in (task.get("businessStatus") or {}).get("coding") or []:
        if coding.get("system") == DEADLINE_STATUS_SYSTEM:
            state = str(coding.get("code"))
    if not state and due and date.fromisoformat(due) < today:
        state = "overdue"
    codes = [str(c.get("code")) for c in (task.get("code") or {}).get("coding") or []]
    return (
        due or "-",
        str(task.get("status")),
        state or "-",
        ",".join(codes) or str(task.get("description", "-")),
        str((task.get("for") or {}).get("reference", "-")),
        f"Task/{task.get('id')}",
    )
