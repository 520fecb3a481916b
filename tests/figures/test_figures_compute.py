"""The key figures' arithmetic on generated populations, with answers computed by hand."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.figures._compute import (
    MEASURES,
    MIN_CELL,
    Course,
    Deadline,
    Episode,
    Facts,
    Month,
    Plan,
    ScoreChange,
    evaluate,
    median,
    percentile,
)

JC = "Organization/org-jobcenter-aarhus"
RU = "Organization/org-aarhus-genoptraening"
NOV = Month(2026, 11)
OWN_JC = (frozenset({JC}),)
MUNICIPALITY = (frozenset({JC}), frozenset({RU}))


def cells(measure: str, facts: Facts, members: tuple[frozenset[str], ...] = OWN_JC) -> dict:
    return {(c.group, c.stratum): c for c in evaluate(measure, facts, NOV, members).cells}


def test_month_boundaries() -> None:
    assert (Month(2026, 2).first, Month(2026, 2).last) == (date(2026, 2, 1), date(2026, 2, 28))
    assert Month(2026, 1).shift(-3) == Month(2025, 10)
    assert Month.parse("2026-11") == NOV and str(NOV) == "2026-11"


def test_median_and_nearest_rank_percentile_by_hand() -> None:
    # 1..10: median (5+6)/2 = 5.5; p90 = the 9th value (ceil(0.9*10) = 9)
    assert median(list(range(1, 11))) == Decimal("5.5")
    assert percentile(list(range(1, 11)), 90) == 9
    # 7 values: median the 4th; p90 = ceil(6.3) = 7th
    assert median([30, 10, 20, 70, 40, 60, 50]) == 40
    assert percentile([30, 10, 20, 70, 40, 60, 50], 90) == 70


def test_waiting_time_generated_population() -> None:
    # Citizen i received a plan on Oct 1 and started on Oct 1 + 7*i days (i = 1..8); only
    # starts in November count: i = 5 (Nov 5), 6 (Nov 12), 7 (Nov 19), 8 (Nov 26) and the
    # extra citizens 9 and 10 started Nov 3 (33 days) and Nov 30 (60 days).
    courses = [
        Course(
            f"Patient/{i}", frozenset({RU}), date(2026, 10, 1), date(2026, 10, 1) + timedelta(7 * i)
        )
        for i in range(1, 9)
    ]
    courses += [
        Course("Patient/9", frozenset({RU}), date(2026, 10, 1), date(2026, 11, 3)),
        Course("Patient/10", frozenset({RU}), date(2026, 10, 1), date(2026, 11, 30)),
        Course("Patient/11", frozenset({JC}), date(2026, 10, 1), date(2026, 11, 2)),  # not RU's
    ]
    got = cells("waiting-time", Facts(courses=tuple(courses)), (frozenset({RU}),))
    # values: 35, 42, 49, 56, 33, 60 → sorted 33 35 42 49 56 60: median (42+49)/2, p90 6th
    assert got[("median", None)].population == 6
    assert got[("median", None)].score == Decimal("45.5")
    assert got[("p90", None)].score == 60


def test_counts_are_citizens_not_rows_and_small_ones_are_suppressed() -> None:
    plans = [Plan(f"Patient/{i}", frozenset({RU}), date(2026, 11, 10)) for i in range(6)]
    plans.append(Plan("Patient/0", frozenset({RU}), date(2026, 11, 20)))  # the same citizen
    plans.append(Plan("Patient/x", frozenset({RU}), date(2026, 12, 1)))  # next month
    got = cells("new-rehab-plans", Facts(plans=tuple(plans)), (frozenset({RU}),))
    assert got[("plans", None)].score == 6
    few = cells("new-rehab-plans", Facts(plans=tuple(plans[:4])), (frozenset({RU}),))
    assert few[("plans", None)].suppressed and few[("plans", None)].score is None
    none = cells("new-rehab-plans", Facts(), (frozenset({RU}),))
    assert none[("plans", None)].score == 0 and not none[("plans", None)].suppressed


def _cases() -> tuple[Episode, ...]:
    # 6 open since the summer, 5 new in November, 5 ended in October, 5 ended in November.
    cases = [Episode(f"Patient/a{i}", frozenset({JC}), date(2026, 7, 1), None) for i in range(6)]
    cases += [
        Episode(f"Patient/b{i}", frozenset({JC}), date(2026, 11, 2 + i), None) for i in range(5)
    ]
    cases += [
        Episode(f"Patient/c{i}", frozenset({JC}), date(2026, 6, 1), date(2026, 10, 20))
        for i in range(5)
    ]
    cases += [
        Episode(f"Patient/d{i}", frozenset({JC}), date(2026, 6, 1), date(2026, 11, 20))
        for i in range(5)
    ]
    return tuple(cases)


def test_stock_and_flows_by_hand() -> None:
    facts = Facts(cases=_cases())
    assert cells("sickness-benefit-citizens", facts)[("citizens", None)].score == 16  # a, b, d
    assert cells("case-inflow", facts)[("inflow", None)].score == 5
    assert cells("case-outflow", facts)[("outflow", None)].score == 5
    # stock(Nov) = stock(Oct) + inflow(Nov) - outflow(Oct): 16 = (6 + 5 + 5) + 5 - 5
    oct_stock = evaluate("sickness-benefit-citizens", facts, NOV.shift(-1), OWN_JC).cells[0]
    assert oct_stock.score == 16


def test_stock_is_hidden_when_a_flow_in_its_identity_is_small() -> None:
    """stock(M) - stock(M-1) + outflow(M-1) would otherwise reveal a small inflow(M)."""
    cases = list(_cases())
    cases = [c for c in cases if not c.citizen.startswith("Patient/b")]
    cases += [Episode(f"Patient/b{i}", frozenset({JC}), date(2026, 11, 3), None) for i in range(2)]
    facts = Facts(cases=tuple(cases))
    assert cells("case-inflow", facts)[("inflow", None)].suppressed
    assert cells("sickness-benefit-citizens", facts)[("citizens", None)].suppressed


def test_partial_returns_by_hand() -> None:
    returns = [
        Episode(f"Patient/{i}", frozenset({JC}), date(2026, 10, 1), date(2026, 11, 1))
        for i in range(5)
    ]
    returns += [Episode("Patient/late", frozenset({JC}), date(2026, 12, 1), None)]
    assert (
        cells("partial-returns", Facts(gradual_returns=tuple(returns)))[("citizens", None)].score
        == 5
    )


def test_deadlines_on_time_per_kind_and_proportion_suppression() -> None:
    due = date(2026, 11, 15)
    deadlines = [
        Deadline(f"Patient/{i}", frozenset({JC}), "first-follow-up", due, "met") for i in range(10)
    ]
    deadlines += [
        Deadline(f"Patient/{i}", frozenset({JC}), "first-follow-up", due, "met-late")
        for i in range(10, 15)
    ]
    # contact: 6 met, 3 overdue → 3 without the attribute: the rate would single them out
    deadlines += [
        Deadline(f"Patient/k{i}", frozenset({JC}), "contact", due, "met") for i in range(6)
    ]
    deadlines += [
        Deadline(f"Patient/l{i}", frozenset({JC}), "contact", due, "overdue") for i in range(3)
    ]
    got = cells("deadlines-on-time", Facts(deadlines=tuple(deadlines)))
    follow = got[("on-time", "first-follow-up")]
    assert (follow.population, follow.numerator, follow.score) == (15, 10, Decimal("0.667"))
    assert got[("on-time", "contact")].suppressed
    assert got[("on-time", "contact")].numerator is None


def test_score_change_uses_latest_in_month_per_citizen() -> None:
    scores = [
        ScoreChange(
            f"Patient/{i}",
            frozenset({RU}),
            "oswestry-odi",
            date(2026, 11, 10),
            Decimal(40),
            Decimal(40 - 2 * i),
        )
        for i in range(5)
    ]  # changes 0, -2, -4, -6, -8 → mean -4
    scores.append(
        ScoreChange(
            "Patient/0",
            frozenset({RU}),
            "oswestry-odi",
            date(2026, 11, 2),
            Decimal(40),
            Decimal(50),
        )
    )
    scores += [
        ScoreChange(
            f"Patient/{i}", frozenset({RU}), "psfs", date(2026, 11, 10), Decimal(3), Decimal(5)
        )
        for i in range(3)
    ]
    got = cells("score-change", Facts(scores=tuple(scores)), (frozenset({RU}),))
    assert got[("change", "oswestry-odi")].score == Decimal("-4.00")
    assert got[("change", "psfs")].suppressed  # 3 citizens


def test_off_benefit_three_months_after_start_by_hand() -> None:
    # training started in August (report month November): 10 citizens; the 5 whose case
    # ended before start + 3 months are off benefit, the 5 still open are not.
    courses, cases = [], []
    for i in range(10):
        started = date(2026, 8, 10 + i)
        courses.append(Course(f"Patient/{i}", frozenset({RU}), date(2026, 7, 1), started))
        end = date(2026, 10, 1) if i < 5 else None
        cases.append(Episode(f"Patient/{i}", frozenset({JC}), date(2026, 5, 1), end))
    got = cells(
        "off-benefit-after-rehab",
        Facts(courses=tuple(courses), cases=tuple(cases)),
        (frozenset({RU}),),
    )
    cell = got[("off-benefit", None)]
    assert (cell.population, cell.numerator, cell.score) == (10, 5, Decimal("0.500"))


def test_municipality_hides_a_cell_a_member_could_subtract() -> None:
    """JC has 7 plans, RU 3: the municipality's 10 minus JC's own 7 would reveal RU's 3."""
    plans = [Plan(f"Patient/j{i}", frozenset({JC}), date(2026, 11, 5)) for i in range(7)]
    plans += [Plan(f"Patient/r{i}", frozenset({RU}), date(2026, 11, 5)) for i in range(3)]
    facts = Facts(plans=tuple(plans))
    assert cells("new-rehab-plans", facts, OWN_JC)[("plans", None)].score == 7
    assert cells("new-rehab-plans", facts, (frozenset({RU}),))[("plans", None)].suppressed
    assert cells("new-rehab-plans", facts, MUNICIPALITY)[("plans", None)].suppressed
    # with 5 at the unit both are shown, and the municipality counts citizens once
    plans += [Plan(f"Patient/r{i}", frozenset({RU}), date(2026, 11, 6)) for i in range(3, 5)]
    plans += [Plan("Patient/j0", frozenset({RU}), date(2026, 11, 7))]
    shown = cells("new-rehab-plans", Facts(plans=tuple(plans)), MUNICIPALITY)[("plans", None)]
    assert shown.score == 12


# --- properties ---------------------------------------------------------------------------

_citizen = st.integers(min_value=0, max_value=30).map(lambda i: f"Patient/{i}")
_org = st.sampled_from([JC, RU])
_day = st.dates(min_value=date(2026, 9, 1), max_value=date(2027, 1, 31))
_plans = st.lists(
    st.builds(lambda c, o, d: Plan(c, frozenset({o}), d), _citizen, _org, _day), max_size=40
)
_deadlines = st.lists(
    st.builds(
        lambda c, o, d, k, s: Deadline(c, frozenset({o}), k, d, s),
        _citizen,
        _org,
        _day,
        st.sampled_from(["contact", "first-follow-up"]),
        st.sampled_from(["met", "met-late", "overdue", None]),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(plans=_plans, deadlines=_deadlines)
def test_no_shown_cell_describes_one_to_four_citizens(plans, deadlines) -> None:
    facts = Facts(plans=tuple(plans), deadlines=tuple(deadlines))
    for members in (OWN_JC, (frozenset({RU}),), MUNICIPALITY):
        for measure in ("new-rehab-plans", "deadlines-on-time"):
            for cell in evaluate(measure, facts, NOV, members).cells:
                if cell.suppressed:
                    assert cell.score is None and cell.numerator is None
                    continue
                assert not 0 < cell.population < MIN_CELL
                if cell.numerator is not None:
                    assert not 0 < cell.numerator < MIN_CELL
                    assert not 0 < cell.population - cell.numerator < MIN_CELL


@settings(max_examples=150, deadline=None)
@given(plans=_plans, deadlines=_deadlines)
def test_subtracting_reports_never_undoes_suppression(plans, deadlines) -> None:
    """Whatever a member can fetch (its own, the municipality), municipality minus own never
    yields the other member's suppressed cell: then the municipality's cell is hidden too."""
    facts = Facts(plans=tuple(plans), deadlines=tuple(deadlines))
    for measure in ("new-rehab-plans", "deadlines-on-time"):
        town = {c.key: c for c in evaluate(measure, facts, NOV, MUNICIPALITY).cells}
        for own, other in ((JC, RU), (RU, JC)):
            mine = {c.key: c for c in evaluate(measure, facts, NOV, (frozenset({own}),)).cells}
            theirs = {c.key: c for c in evaluate(measure, facts, NOV, (frozenset({other}),)).cells}
            for key, hidden in theirs.items():
                if not hidden.suppressed:
                    continue
                both_shown = key in town and not town[key].suppressed
                if both_shown and key in mine and not mine[key].suppressed:
                    raise AssertionError(f"{measure} {key}: town - own reveals {other}'s cell")
                assert not both_shown


def test_measure_groups_agree_with_the_code_system_and_the_arithmetic() -> None:
    """One home per fact: every Measure group is a code of key-figure-group and a group the
    arithmetic produces."""
    from profiles import get_definition
    from profiles._measures import get_measure, measure_ids

    assert sorted(measure_ids()) == sorted(MEASURES)
    system = get_definition("http://brobygger.dk/fhir/CodeSystem/key-figure-group")
    assert system is not None
    codes = {c["code"] for c in system["concept"]}
    for measure_id in measure_ids():
        measure = get_measure(measure_id)
        assert measure is not None
        for group in measure["group"]:
            assert group["code"]["coding"][0]["code"] in codes


def test_every_population_criterion_is_fhirpath_that_compiles_and_selects() -> None:
    """The Measures' criteria are real FHIRPath: each compiles, and selects a matching row."""
    from fhirpathpy import compile as fhirpath

    from profiles._measures import get_measure, measure_ids

    samples = {
        "EpisodeOfCare": {
            "resourceType": "EpisodeOfCare",
            "type": [{"coding": [{"code": "sickness-benefit-case"}]}],
            "period": {"start": "2026-11-02", "end": "2026-11-20"},
        },
        "Task": {
            "resourceType": "Task",
            "code": {
                "coding": [
                    {"system": "http://brobygger.dk/fhir/CodeSystem/deadline", "code": "contact"}
                ]
            },
            "businessStatus": {"coding": [{"code": "met"}]},
            "executionPeriod": {"start": "2026-11-02"},
            "focus": {"reference": "ServiceRequest/plan"},
        },
        "ServiceRequest": {"resourceType": "ServiceRequest", "intent": "plan"},
        "CarePlan": {
            "resourceType": "CarePlan",
            "category": [{"coding": [{"code": "gradual-return-to-work"}]}],
        },
        "Observation": {
            "resourceType": "Observation",
            "code": {"coding": [{"code": "psfs"}]},
            "component": [{"code": {"coding": [{"code": "score-at-start"}]}}],
        },
    }
    for measure_id in measure_ids():
        measure = get_measure(measure_id)
        assert measure is not None
        for group in measure["group"]:
            criteria = [p["criteria"] for p in group["population"]]
            criteria += [s["criteria"] for s in group.get("stratifier", [])]
            for criterion in criteria:
                assert criterion["language"] == "text/fhirpath"
                expression = criterion["expression"]
                sample = samples[expression.split(".", 1)[0]]
                assert fhirpath(expression)(sample), (measure_id, expression)


def test_stock_and_flow_chains_over_two_months_do_not_reveal_a_small_inflow() -> None:
    cases = [Episode(f"Patient/a{i}", frozenset({JC}), date(2026, 7, 1), None) for i in range(6)]
    cases += [Episode(f"Patient/b{i}", frozenset({JC}), date(2026, 11, 3), None) for i in range(2)]
    cases += [Episode(f"Patient/c{i}", frozenset({JC}), date(2026, 12, 3), None) for i in range(5)]
    facts = Facts(cases=tuple(cases))

    def shown(measure: str, month: Month) -> Decimal | None:
        return evaluate(measure, facts, month, OWN_JC).cells[0].score

    dec, nov, octo = NOV.shift(1), NOV, NOV.shift(-1)
    assert shown("case-inflow", nov) is None  # 2: suppressed
    # The stock stays hidden from November on (October, before the small flow, is shown).
    assert shown("sickness-benefit-citizens", octo) == 6
    assert shown("sickness-benefit-citizens", nov) is None
    assert shown("sickness-benefit-citizens", dec) is None
    parts = [
        shown("sickness-benefit-citizens", dec),
        shown("case-inflow", dec),
        shown("case-outflow", nov),
        shown("sickness-benefit-citizens", octo),
        shown("case-outflow", octo),
    ]
    if all(p is not None for p in parts):
        stock_dec, in_dec, out_nov, stock_oct, out_oct = parts
        assert stock_dec is not None and in_dec is not None and out_nov is not None
        assert stock_oct is not None and out_oct is not None
        revealed = (stock_dec - in_dec + out_nov) - stock_oct + out_oct
        assert revealed != 2, "the suppressed inflow of November is revealed"
