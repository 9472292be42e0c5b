"""Errors raised by the harness."""

from __future__ import annotations


class BenchError(RuntimeError):
    """A run failed or produced a wrong result; the benchmark must stop."""


class AdapterUnavailable(RuntimeError):
    """The system cannot be benchmarked here (not installed, stub...)."""
