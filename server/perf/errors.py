"""Errors of the performance tools (load tester, benchmarks): bad options or an unusable server."""

from __future__ import annotations

from adapters import InputtuneError


class LoadTestError(InputtuneError, ValueError):
    """A load test that cannot run as asked (its options, its inputs, the server's answers)."""
