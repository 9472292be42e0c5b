"""Failures: what happens when a job fails, hangs or its worker dies.

``retries`` (retry policies), ``error_history`` (one row per failed attempt),
``dead_letters``, ``breakers`` (circuit breakers), ``timeouts`` and ``stalled``
(rescuing the jobs of dead workers).
"""
