"""Enqueueing: jobs inserted inside the caller's own transaction.

``enqueue`` (``App.enqueue``/``enqueue_many`` and their options), ``payloads``
(arguments checked against the task's type hints) and ``job_manager``
(procrastinate's JobManager routed through the same path).
"""
