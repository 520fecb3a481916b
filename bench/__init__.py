"""Benchmark harness for the gateway (not part of the test suite; see bench/README.md)."""
