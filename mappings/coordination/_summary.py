"""The shared plan in plain Danish, for the citizen (and any party): where am I, what happens
next, what is asked of me, my rights and duties, who changed what. Pure: it renders only what
the reader's :class:`PlanView` holds, so it never says more than the reader may see."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mappings.coordination._plan import PLAN_SYSTEM, ROLES, PlanView

_STATUS = {
    "requested": "ikke startet",
    "received": "modtaget",
    "accepted": "aftalt",
    "in-progress": "i gang",
    "on-hold": "sat i bero",
    "completed": "udført",
    "cancelled": "aflyst",
    "rejected": "afvist",
    "failed": "ikke gennemført",
    "draft": "forslag",
    "active": "aktiv",
}
_DAYS = {
    "mon": "man",
    "tue": "tir",
    "wed": "ons",
    "thu": "tor",
    "fri": "fre",
    "sat": "lør",
    "sun": "søn",
}
_OPEN = frozenset({"requested", "received", "accepted", "in-progress", "on-hold", "draft", "ready"})
_GOAL_KIND = {
    "work-goal": "arbejdsmål",
    "health-goal": "sundhedsmål",
    "citizen-goal": "dit eget mål",
}

RIGHTS_AND_DUTIES = (
    "Du har pligt til at medvirke til opfølgningen på din sygemelding: møde op til samtaler, "
    "give de oplysninger, der er nødvendige, og følge de aftaler, planen indeholder.",
    "Sig til din sagsbehandler med det samme, hvis noget ikke kan lade sig gøre.",
    "Du bestemmer selv, hvad din arbejdsgiver må se: den ser aldrig dine diagnoser eller "
    "helbredsmål, kun arbejdsmålene og de trin, den selv er med i.",
    "Du kan til enhver tid trække et samtykke tilbage; det gælder med det samme.",
    "Du kan se, hvem der har ændret i planen (nedenfor), og hvem der har læst dine oplysninger.",
)


def _name(view: PlanView, reference: Any) -> str:
    ref = reference.get("reference") if isinstance(reference, Mapping) else None
    display = reference.get("display") if isinstance(reference, Mapping) else None
    if isinstance(ref, str) and ref in view.names:
        known = view.names[ref]
        return f"{display} ({known})" if isinstance(display, str) and display != known else known
    if isinstance(display, str):
        return display
    if isinstance(ref, str) and ref.startswith("Patient/"):
        return "dig"
    return str(ref or "ukendt")


def _due(task: Mapping[str, Any]) -> str:
    end = ((task.get("restriction") or {}).get("period") or {}).get("end")
    return str(end)[:10] if end else "uden dato"


def _code(resource: Mapping[str, Any], element: str) -> str | None:
    values = resource.get(element)
    concepts = values if isinstance(values, list) else [values]
    for value in concepts:
        for coding in (value or {}).get("coding") or []:
            if coding.get("system") == PLAN_SYSTEM:
                return str(coding.get("code"))
    return None


def _step(activity: Mapping[str, Any]) -> str:
    detail = activity.get("detail") or {}
    repeat = (detail.get("scheduledTiming") or {}).get("repeat") or {}
    bounds = repeat.get("boundsPeriod") or {}
    days = ", ".join(_DAYS.get(d, d) for d in repeat.get("dayOfWeek") or [])
    times = ", ".join(str(t)[:5] for t in repeat.get("timeOfDay") or [])
    hours = (detail.get("quantity") or {}).get("value")
    parts = [f"{bounds.get('start', '?')} til {bounds.get('end', '?')}: {hours} timer om ugen"]
    if days:
        parts.append(f"({days}{' fra ' + times if times else ''})")
    if detail.get("description"):
        parts.append(f"- {detail['description']}")
    return " ".join(parts)


def plan_summary(view: PlanView) -> str:
    """The plan as plain Danish text (one reader's view)."""
    plan = view.plan
    patient = (plan.get("subject") or {}).get("reference")
    lines = [f"# {plan.get('title', 'Fælles plan')}", ""]
    coordinator = [
        p
        for team in view.team
        for p in team.get("participant") or []
        if _code(p, "role") == "coordinator"
    ]
    lines.append("## Hvor er jeg?")
    lines.append(
        f"Planen er {_STATUS.get(str(plan.get('status')), str(plan.get('status')))} siden "
        f"{(plan.get('period') or {}).get('start', '?')}. "
        f"Den koordineres af {_name(view, plan.get('author'))}."
    )
    if coordinator:
        lines.append(f"Din tovholder er {_name(view, coordinator[0].get('member'))}.")
    done = [a for a in view.activities if a.get("status") == "completed"]
    lines.append(f"{len(done)} af {len(view.activities)} aktiviteter er udført.")
    lines.append("")
    upcoming = sorted(
        (a for a in view.activities if a.get("status") in _OPEN), key=lambda a: _due(a)
    )
    lines.append("## Hvad sker der nu?")
    if not upcoming:
        lines.append("Der er ingen åbne aktiviteter.")
    for activity in upcoming:
        lines.append(
            f"- Senest {_due(activity)}: {_name(view, activity.get('owner'))} - "
            f"{activity.get('description', '')} ({_STATUS.get(str(activity.get('status')), '')})"
        )
    for proposal in view.gradual_return:
        lines.append(f"- Optrapning ({_STATUS.get(str(proposal.get('status')), '')}):")
        lines += [f"  - {_step(a)}" for a in proposal.get("activity") or []]
    lines.append("")
    lines.append("## Hvad forventes af mig?")
    mine = [a for a in upcoming if (a.get("owner") or {}).get("reference") == patient]
    for activity in mine:
        lines.append(f"- Senest {_due(activity)}: {activity.get('description', '')}")
    for goal in view.goals:
        kind = _GOAL_KIND.get(_code(goal, "category") or "", "mål")
        due = next((t.get("dueDate") for t in goal.get("target") or [] if t.get("dueDate")), None)
        text = (goal.get("description") or {}).get("text", "")
        lines.append(f"- Mål ({kind}): {text}{f' - senest {due}' if due else ''}")
    if not mine and not view.goals:
        lines.append("- Møde op til de aftalte samtaler og aktiviteter.")
    lines.append("")
    if view.team:
        lines.append("## Hvem er med?")
        for team in view.team:
            for participant in team.get("participant") or []:
                role = ROLES.get(_code(participant, "role") or "", "deltager")
                lines.append(f"- {role}: {_name(view, participant.get('member'))}")
            for telecom in team.get("telecom") or []:
                lines.append(f"- Direkte kontakt: {telecom.get('value')}")
        lines.append("")
    if view.notes:
        lines.append("## Aftaler og noter")
        for note in sorted(view.notes, key=lambda n: str(n.get("sent", ""))):
            text = next(
                (p["contentString"] for p in note.get("payload") or [] if "contentString" in p),
                "",
            )
            lines.append(f"- {note.get('sent', '')}: {text}")
        lines.append("")
    lines.append("## Dine rettigheder og pligter")
    lines += [f"- {line}" for line in RIGHTS_AND_DUTIES]
    lines.append("")
    lines.append("## Hvem har ændret hvad")
    for when, who, what in sorted(view.changes, reverse=True):
        lines.append(f"- {when[:16].replace('T', ' ')} {who}: {what}")
    return "\n".join(lines) + "\n"
