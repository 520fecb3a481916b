"""Data: JSON conformance resources loaded by ``profiles._registry`` (a package so it ships)."""
