"""Conformance: other servers' own test suites, ported, run against ours."""
