"""The guarded data path is the only way to stored resources: no door reaches the store.

Routes, the ingest pipeline and messaging get a ``DataPath`` (or a ``GuardedWriter`` from
one); only ``gateway.store`` itself, ``gateway.data`` (the guard), the consent gate it uses and
the operator's own tools touch the store's resource methods. This test reads the source: a
new module that calls ``store.read(…)`` or builds a raw ``Writer`` fails it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "gateway"
# Modules allowed to use the store's resource primitives, and why.
ALLOWED = {
    "store": "the store itself",
    "data": "the guarded data path",
    "access.py": "the consent gate (reads consents and the rows it decides on)",
    "participants": "the operator's participant directory (Organizations of participants)",
    "audit_cli.py": "the operator's audit look-up",
    "auth/citizens.py": "resolves a portal's citizen to its Patient id (no content returned)",
    "figures/_rows.py": "key figures: rows reduced to suppressed aggregates in-process (DOMAIN.md)",
}
RESOURCE_METHODS = {
    "read",
    "vread",
    "search",
    "history",
    "referring_to",
    "search_ids",
    "put",
    "create",
    "update",
    "delete",
}


def _allowed(path: Path) -> bool:
    relative = path.relative_to(ROOT).as_posix()
    return any(relative == key or relative.startswith(key + "/") for key in ALLOWED)


def _receiver(node: ast.expr) -> str:
    return ast.unparse(node)


def test_no_door_reaches_the_stores_resource_methods() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        if _allowed(path):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "gateway.store.repository":
                if any(alias.name == "Writer" for alias in node.names):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports Writer")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in RESOURCE_METHODS
            ):
                receiver = _receiver(node.func.value)
                if receiver.split(".")[-1] in ("store", "raw"):
                    offenders.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} calls {receiver}.{node.func.attr}"
                    )
    assert offenders == [], "\n".join(offenders)


def test_routes_get_the_data_path_not_the_store() -> None:
    """A route module may not take the store as a dependency to read or write resources."""
    for name in ("api/fhir.py", "ingest/routes.py"):
        source = (ROOT / name).read_text(encoding="utf-8")
        assert "StoreDep" not in source, name


def test_the_web_view_reads_no_rows_of_its_own() -> None:
    """The web view is one more client of the guarded path: no table, no raw connection.
    (Its staff table is the sign-in's own, in ``_staff.py``; key figures come from
    ``gateway.figures`` like the REST operation's.)"""
    offenders = []
    for path in sorted((ROOT / "web").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "gateway.store.schema":
                if path.name != "_staff.py" or any(a.name != "staff_users" for a in node.names):
                    offenders.append(f"{path.name}:{node.lineno} imports the store's tables")
            if isinstance(node, ast.Attribute) and node.attr in ("read_connection", "engine"):
                if path.name != "_staff.py":
                    offenders.append(f"{path.name}:{node.lineno} uses {node.attr}")
    assert offenders == [], "\n".join(offenders)
