"""The guarded data path: the only way from a door (route, pipeline, worker, CLI) to the store.

``DataPath`` (one principal, one request) reads through the consent gate and writes through
``GuardedWriter``; ``gateway.store`` itself is reached only from here (and from the operator's
directory and message-record code, which hold no health data).
"""

from gateway.data.bundles import rewrite_references, run_transaction_in
from gateway.data.entries import EntryRequest, parse_entry, parse_entry_url
from gateway.data.path import DEFAULT_PURPOSE, OPERATOR, DataPath, SearchPage, principal_for
from gateway.data.writer import IDENTITY_TYPES, GuardedWriter, Match

__all__ = [
    "DEFAULT_PURPOSE",
    "IDENTITY_TYPES",
    "OPERATOR",
    "DataPath",
    "EntryRequest",
    "GuardedWriter",
    "Match",
    "SearchPage",
    "parse_entry",
    "parse_entry_url",
    "principal_for",
    "rewrite_references",
    "run_transaction_in",
]
