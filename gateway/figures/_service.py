"""One call for every door (REST, CLI, web view): a caller's key figures for one month."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.figures._compute import MEASURES, Facts, Figure, Month, evaluate
from gateway.figures._report import measure_or_404, measure_report
from gateway.figures._rows import load_facts
from gateway.figures._scope import Scope, resolve_scope
from gateway.participants.directory import Participant, ParticipantDirectory
from gateway.store.repository import Store


async def scope_for(
    directory: ParticipantDirectory, caller: Participant, subject: str | None
) -> Scope:
    others = await directory.list() if subject else []
    return resolve_scope(caller, subject, others)


def figures_for(facts: Facts, scope: Scope, month: Month) -> list[Figure]:
    return [evaluate(m, facts, month, scope.members) for m in MEASURES]


async def evaluate_measure(
    store: Store,
    directory: ParticipantDirectory,
    caller: Participant,
    measure_id: str,
    month: Month,
    subject: str | None,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    measure_or_404(measure_id)
    scope = await scope_for(directory, caller, subject)
    figure = evaluate(measure_id, await load_facts(store), month, scope.members)
    return measure_report(figure, scope, month, now=now or datetime.now(UTC))


async def all_reports(
    store: Store,
    directory: ParticipantDirectory,
    caller: Participant,
    month: Month,
    subject: str | None,
    *,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    scope = await scope_for(directory, caller, subject)
    facts = await load_facts(store)
    when = now or datetime.now(UTC)
    return [measure_report(f, scope, month, now=when) for f in figures_for(facts, scope, month)]
