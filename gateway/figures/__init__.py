"""Managers' key figures (ledelsesinformation): Measures evaluated into summary MeasureReports.

``_compute`` is the pure arithmetic and the disclosure control; ``_rows`` the one read of the
store (aggregates only — see its docstring for why that needs no per-citizen consent);
``_scope`` whose figures a participant may see; ``_report`` the MeasureReport; ``routes`` the
``$evaluate-measure`` operation; ``cli`` ``brobygger figures``.
"""

from gateway.figures._compute import MEASURES, MIN_CELL, Facts, Figure, Month, evaluate
from gateway.figures._report import month_of
from gateway.figures._scope import Scope, municipality_subject, resolve_scope
from gateway.figures._service import all_reports, evaluate_measure, figures_for, scope_for

__all__ = [
    "MEASURES",
    "MIN_CELL",
    "Facts",
    "Figure",
    "Month",
    "Scope",
    "all_reports",
    "evaluate",
    "evaluate_measure",
    "figures_for",
    "month_of",
    "municipality_subject",
    "resolve_scope",
    "scope_for",
]
