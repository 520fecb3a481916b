"""The rule table (``rules.toml``) as typed values: one home for every deadline number."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

KINDS = frozenset({"weeks", "follow-up-count", "paid-weeks", "extension-limit", "days-after"})


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table; which fields matter depends on ``kind``."""

    code: str
    display: str
    kind: str
    law: str
    source: str
    from_week: int = 1
    due_end_of_week: int = 0
    after_refund_claim_days: int | None = None
    needs_assessment: bool = False
    count: int = 0
    from_months: int = 0
    to_months: int = 0
    categories: frozenset[str] = frozenset()
    weeks: int = 0
    within_months: int = 0
    end_of_month: bool = False
    employer_period_days: dict[str, int] = field(default_factory=dict)
    counted: frozenset[str] = frozenset()
    limit_weeks: dict[str, int] = field(default_factory=dict)
    after: str = ""
    days: int = 0


@dataclass(frozen=True, slots=True)
class RuleTable:
    version: str
    title: str
    rules: dict[str, Rule]

    def __getitem__(self, code: str) -> Rule:
        return self.rules[code]


def _rule(raw: dict[str, Any]) -> Rule:
    kind = raw["kind"]
    if kind not in KINDS:
        raise ValueError(f"rule {raw.get('code')}: unknown kind {kind!r}")
    for key in ("code", "display", "law", "source"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ValueError(f"rule {raw.get('code')}: '{key}' is required")
    weeks = raw.get("weeks", 0)
    return Rule(
        code=raw["code"],
        display=raw["display"],
        kind=kind,
        law=raw["law"],
        source=raw["source"],
        from_week=int(raw.get("from_week", 1)),
        due_end_of_week=int(raw.get("due_end_of_week", 0)),
        after_refund_claim_days=raw.get("after_refund_claim_days"),
        needs_assessment=bool(raw.get("needs_assessment", False)),
        count=int(raw.get("count", 0)),
        from_months=int(raw.get("from_months", 0)),
        to_months=int(raw.get("to_months", 0)),
        categories=frozenset(raw.get("categories", ())),
        weeks=weeks if isinstance(weeks, int) else 0,
        within_months=int(raw.get("within_months", 0)),
        end_of_month=bool(raw.get("end_of_month", False)),
        employer_period_days=dict(raw.get("employer_period_days", {})),
        counted=frozenset(raw.get("counted", ())),
        limit_weeks=dict(weeks) if isinstance(weeks, dict) else {},
        after=str(raw.get("after", "")),
        days=int(raw.get("days", 0)),
    )


def parse_rules(text: str) -> RuleTable:
    """A rule table from TOML text; ``ValueError`` on a malformed one."""
    data = tomllib.loads(text)
    if data.get("schema") != 1:
        raise ValueError("unknown rule table schema")
    rules = [_rule(r) for r in data.get("rule", [])]
    codes = [r.code for r in rules]
    if len(set(codes)) != len(codes):
        raise ValueError("a rule code appears twice")
    return RuleTable(str(data["version"]), str(data.get("title", "")), {r.code: r for r in rules})


@cache
def rule_table() -> RuleTable:
    """The table shipped with the package (``mappings/deadlines/rules.toml``)."""
    text = resources.files(__package__).joinpath("rules.toml").read_text(encoding="utf-8")
    return parse_rules(text)
