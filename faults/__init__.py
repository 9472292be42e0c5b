"""Fault injection for pgjobs: break workers, connections and the database on
purpose, then count from the database what happened to every job.

``python -m faults`` (``make faults``) runs the scenarios and prints a table;
``tests/test_faults.py`` runs the same scenarios small in the test suite.
"""
