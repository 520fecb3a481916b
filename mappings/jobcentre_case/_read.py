"""Case export XML → ``SicknessBenefitCase``: jobcentre-case.md "Input" and its rejections."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

from mappings._errors import IssueCollector
from mappings._identifiers import (
    CPR_RULE,
    CVR_RULE,
    EAN_RULE,
    MUNICIPALITY_RULE,
    SOR_RULE,
    is_valid_cpr,
    is_valid_cvr,
    is_valid_ean,
    is_valid_municipality,
    is_valid_sor,
    normalise_municipality,
)
from mappings._parties import OrganizationInfo
from mappings._values import (
    more_than_a_day_ahead,
    read_checked,
    read_code,
    read_date,
    read_datetime,
    read_decimal,
    read_id,
)
from mappings._xml import Node, Occurs, Shape, leaf
from mappings.deadlines import PaidPeriod
from mappings.jobcentre_case._model import (
    Closing,
    FollowUp,
    PartialReturn,
    Participant,
    Period,
    Reassessment,
    SicknessBenefitCase,
    WorkedWeek,
)
from mappings.jobcentre_case._tables import (
    ASSESSMENTS,
    CATEGORIES,
    CLOSING_REASONS,
    DAYS,
    DIAGNOSIS_GROUPS,
    EXTENSION_GROUNDS,
    FOLLOW_UP_CLASS,
    FOLLOW_UP_TYPES,
    MAX_HOURS_PER_WEEK,
    PARTICIPANT_ROLES,
    PAYMENT_ARTS,
    REASSESSMENT_OUTCOMES,
    SICK_LISTED_FROM,
    TIME_WORDS,
)

NAMESPACE = "urn:brobygger:jobcenter:sygedagpengesag:1"
ROOT = "Sygedagpengesag"
# (1.1) ArbejdetTimer @uge and Tider: an ISO week, a span of clock times.
_ISO_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_TIME_SPAN = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")
MAX_HOURS_IN_A_WEEK = 168


def _attrs(
    name: str, occurs: Occurs, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> Shape:
    return Shape(
        name,
        occurs,
        attributes=required + optional,
        required_attributes=required,
        text=False,
    )


SHAPE = Shape(
    ROOT,
    children=(
        leaf("SagId"),
        leaf("Opdateret"),
        leaf("Kommunekode"),
        Shape(
            "Jobcenter",
            children=(leaf("Navn"), leaf("Afdeling", "?"), leaf("EAN", "?"), leaf("SOR", "?")),
        ),
        Shape("Sagsbehandler", "?", children=(leaf("Navn"), leaf("Initialer", "?"))),
        Shape("Borger", children=(leaf("CPR"), leaf("Navn"))),
        _attrs("Sygemeldt", "1", ("fra",)),
        Shape("Arbejdsgiver", "?", children=(leaf("CVR"), leaf("Navn"), leaf("Kontakt", "?"))),
        leaf("ForsteFravaersdag"),
        Shape("Kategori", "?", attributes=("fastsat",), required_attributes=("fastsat",)),
        leaf("Diagnosegruppe", "?"),
        # Listed without "?" in the spec, but a case before its first follow-up has none to
        # list: the container is optional (absent = no follow-ups yet).
        Shape(
            "Opfoelgninger",
            "?",
            children=(
                Shape(
                    "Opfoelgning",
                    "*",
                    attributes=("dato", "form", "type"),
                    required_attributes=("dato", "form", "type"),
                    children=(
                        Shape(
                            "Deltager",
                            "*",
                            attributes=("rolle",),
                            required_attributes=("rolle",),
                            text=True,
                        ),
                        leaf("Vurdering", "?"),
                        leaf("Indsats", "*"),
                        leaf("Notat", "?"),
                    ),
                ),
            ),
        ),
        Shape(
            "DelvisRaskmelding",
            "*",
            attributes=("fra", "til"),
            required_attributes=("fra",),
            children=(
                Shape(
                    "Optrapningsplan",
                    children=(
                        Shape(
                            "Periode",
                            "*",
                            attributes=("fra", "til", "timerPrUge"),
                            required_attributes=("fra", "til", "timerPrUge"),
                            children=(leaf("Dage", "?"), leaf("Tider", "?")),
                        ),
                    ),
                ),
                _attrs("ArbejdetTimer", "*", ("uge", "timer")),
            ),
        ),
        Shape(
            "Udbetalinger",
            "?",
            children=(_attrs("Periode", "*", ("fra", "art"), ("til",)),),
        ),
        _attrs("Revurdering", "?", ("dato", "udfald", "grundlag"), ("forlaengelse",)),
        _attrs("Afslutning", "?", ("dato", "aarsag")),
    ),
)


def _attr_date(node: Node, name: str, issues: IssueCollector) -> date | None:
    return read_date(node.attributes.get(name) or None, node.attribute_path(name), issues)


def _follow_up(node: Node, issues: IssueCollector) -> FollowUp | None:
    day = _attr_date(node, "dato", issues)
    form = read_code(
        node.attributes.get("form") or None, node.attribute_path("form"), issues, FOLLOW_UP_CLASS
    )
    kind = read_code(
        node.attributes.get("type") or None, node.attribute_path("type"), issues, FOLLOW_UP_TYPES
    )
    participants = []
    for deltager in node.all("Deltager"):
        role = read_code(
            deltager.attributes.get("rolle") or None,
            deltager.attribute_path("rolle"),
            issues,
            PARTICIPANT_ROLES,
        )
        if role is not None:
            participants.append(Participant(role, deltager.text))
    assessment = read_code(
        node.text_of("Vurdering"), node.child_path("Vurdering"), issues, ASSESSMENTS
    )
    if day is None or form is None or kind is None:
        return None
    return FollowUp(
        day=day,
        form=form,
        type=kind,
        participants=tuple(participants),
        assessment=assessment,
        actions=tuple(i.text for i in node.all("Indsats") if i.text),
        note=node.text_of("Notat"),
    )


def _period(node: Node, issues: IssueCollector) -> Period | None:
    start, end = _attr_date(node, "fra", issues), _attr_date(node, "til", issues)
    if start and end and end < start:
        issues.error(node.attribute_path("til"), "the period ends before it starts")
    hours = read_decimal(
        node.attributes.get("timerPrUge") or None,
        node.attribute_path("timerPrUge"),
        issues,
        Decimal(0),
        Decimal(MAX_HOURS_PER_WEEK),
    )
    days: list[str] = []
    if (text := node.text_of("Dage")) is not None:
        for part in text.split(","):
            code = DAYS.get(part.strip())
            if code is None:
                issues.error(
                    node.child_path("Dage"), "days must be from man,tir,ons,tor,fre,loer,soen"
                )
                break
            if code not in days:
                days.append(code)
    times: list[str] = []
    if (text := node.text_of("Tider")) is not None:
        for part in (p.strip() for p in text.split(",")):
            if not (_TIME_SPAN.match(part) or part in TIME_WORDS):
                issues.error(
                    node.child_path("Tider"),
                    "times must be HH:MM-HH:MM, 'formiddag' or 'eftermiddag', comma-separated",
                )
                break
            times.append(part)
    if start is None or end is None or hours is None:
        return None
    return Period(start, end, hours, tuple(days), tuple(times))


def _worked_week(node: Node, issues: IssueCollector) -> WorkedWeek | None:
    text = node.attributes.get("uge") or ""
    monday = None
    if (match := _ISO_WEEK.match(text)) is not None:
        try:
            monday = date.fromisocalendar(int(match[1]), int(match[2]), 1)
        except ValueError:
            monday = None
    if monday is None:
        issues.error(node.attribute_path("uge"), "an ISO week YYYY-Www that exists")
    hours = read_decimal(
        node.attributes.get("timer") or None,
        node.attribute_path("timer"),
        issues,
        Decimal(0),
        Decimal(MAX_HOURS_IN_A_WEEK),
    )
    if monday is None or hours is None:
        return None
    return WorkedWeek(text, monday, hours)


def _payment(node: Node, issues: IssueCollector) -> PaidPeriod | None:
    start, end = _attr_date(node, "fra", issues), _attr_date(node, "til", issues)
    if start and end and end < start:
        issues.error(node.attribute_path("til"), "the period ends before it starts")
    art = read_code(
        node.attributes.get("art") or None, node.attribute_path("art"), issues, PAYMENT_ARTS
    )
    if start is None or art is None:
        return None
    return PaidPeriod(start, end, art)


def _partial_return(node: Node, issues: IssueCollector) -> PartialReturn | None:
    start, end = _attr_date(node, "fra", issues), _attr_date(node, "til", issues)
    if start and end and end < start:
        issues.error(node.attribute_path("til"), "the period ends before it starts")
    plan = node.one("Optrapningsplan")
    periods = [_period(p, issues) for p in plan.all("Periode")] if plan else []
    worked = [_worked_week(w, issues) for w in node.all("ArbejdetTimer")]
    if start is None:
        return None
    return PartialReturn(
        start,
        end,
        tuple(p for p in periods if p is not None),
        tuple(w for w in worked if w is not None),
    )


def _party(node: Node, issues: IssueCollector) -> tuple[str | None, str | None]:
    sor = read_checked(node.text_of("SOR"), node.child_path("SOR"), issues, is_valid_sor, SOR_RULE)
    ean = read_checked(node.text_of("EAN"), node.child_path("EAN"), issues, is_valid_ean, EAN_RULE)
    return sor, ean


def read_case(root: Node, issues: IssueCollector, now: datetime) -> SicknessBenefitCase | None:
    """The model, or None when ``issues`` holds errors."""
    case_id = read_id(root.text_of("SagId"), root.child_path("SagId"), issues)
    updated = read_datetime(root.text_of("Opdateret"), root.child_path("Opdateret"), issues)
    if updated is not None and more_than_a_day_ahead(updated, now):
        issues.error(root.child_path("Opdateret"), "more than a day in the future")
    municipality = read_checked(
        root.text_of("Kommunekode"),
        root.child_path("Kommunekode"),
        issues,
        is_valid_municipality,
        MUNICIPALITY_RULE,
    )
    jobcenter, borger = root.one("Jobcenter"), root.one("Borger")
    sygemeldt = root.one("Sygemeldt")
    cpr = None
    if borger is not None:
        cpr = read_checked(
            borger.text_of("CPR"), borger.child_path("CPR"), issues, is_valid_cpr, CPR_RULE
        )
    sor, ean = _party(jobcenter, issues) if jobcenter is not None else (None, None)
    sick_listed_from = None
    if sygemeldt is not None:
        sick_listed_from = read_code(
            sygemeldt.attributes.get("fra") or None,
            sygemeldt.attribute_path("fra"),
            issues,
            SICK_LISTED_FROM,
        )
    employer = None
    if (arbejdsgiver := root.one("Arbejdsgiver")) is not None:
        cvr = read_checked(
            arbejdsgiver.text_of("CVR"),
            arbejdsgiver.child_path("CVR"),
            issues,
            is_valid_cvr,
            CVR_RULE,
        )
        employer = OrganizationInfo(
            name=arbejdsgiver.text_of("Navn"),
            kind="employer",
            cvr=cvr,
            contact=arbejdsgiver.text_of("Kontakt"),
        )
    first_day = read_date(
        root.text_of("ForsteFravaersdag"), root.child_path("ForsteFravaersdag"), issues
    )
    category = category_set = None
    if (kategori := root.one("Kategori")) is not None:
        category = read_code(kategori.text, kategori.path, issues, CATEGORIES)
        if kategori.text is None:
            issues.error(kategori.path, "required element is empty")
        category_set = _attr_date(kategori, "fastsat", issues)
    group = read_code(
        root.text_of("Diagnosegruppe"), root.child_path("Diagnosegruppe"), issues, DIAGNOSIS_GROUPS
    )
    follow_ups = []
    if (container := root.one("Opfoelgninger")) is not None:
        follow_ups = [_follow_up(o, issues) for o in container.all("Opfoelgning")]
    partial_returns = [_partial_return(d, issues) for d in root.all("DelvisRaskmelding")]
    reassessment = None
    if (revurdering := root.one("Revurdering")) is not None:
        day = _attr_date(revurdering, "dato", issues)
        outcome = read_code(
            revurdering.attributes.get("udfald") or None,
            revurdering.attribute_path("udfald"),
            issues,
            REASSESSMENT_OUTCOMES,
        )
        ground = revurdering.attributes.get("grundlag")
        extension = read_code(
            revurdering.attributes.get("forlaengelse") or None,
            revurdering.attribute_path("forlaengelse"),
            issues,
            EXTENSION_GROUNDS,
        )
        if day and outcome and ground:
            reassessment = Reassessment(day, outcome, ground, extension)
    payments: list[PaidPeriod | None] | None = None
    if (udbetalinger := root.one("Udbetalinger")) is not None:
        payments = [_payment(p, issues) for p in udbetalinger.all("Periode")]
    closing = None
    if (afslutning := root.one("Afslutning")) is not None:
        day = _attr_date(afslutning, "dato", issues)
        reason = read_code(
            afslutning.attributes.get("aarsag") or None,
            afslutning.attribute_path("aarsag"),
            issues,
            CLOSING_REASONS,
        )
        if day and first_day and day < first_day:
            issues.error(afslutning.attribute_path("dato"), "the case ends before it starts")
        if day and reason:
            closing = Closing(day, reason)
    caseworker = root.one("Sagsbehandler")
    if issues.has_errors:
        return None
    assert case_id and updated and municipality and cpr and first_day  # noqa: S101
    assert borger is not None and jobcenter is not None and sick_listed_from  # noqa: S101
    municipality = normalise_municipality(municipality)
    name_parts = (jobcenter.text_of("Navn"), jobcenter.text_of("Afdeling"))
    return SicknessBenefitCase(
        case_id=case_id,
        updated=updated,
        municipality=municipality,
        jobcentre=OrganizationInfo(
            name=", ".join(p for p in name_parts if p),
            kind="jobcentre",
            sor=sor,
            municipality=municipality,
            ean=ean,
        ),
        caseworker_name=caseworker.text_of("Navn") if caseworker else None,
        caseworker_initials=caseworker.text_of("Initialer") if caseworker else None,
        cpr=cpr,
        citizen_name=borger.text_of("Navn") or "",
        sick_listed_from=sick_listed_from,
        employer=employer,
        first_day_of_absence=first_day,
        category=category,
        category_set=category_set,
        diagnosis_group=group,
        follow_ups=tuple(f for f in follow_ups if f is not None),
        partial_returns=tuple(p for p in partial_returns if p is not None),
        reassessment=reassessment,
        closing=closing,
        payments=None if payments is None else tuple(p for p in payments if p is not None),
    )
