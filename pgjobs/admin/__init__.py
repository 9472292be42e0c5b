"""Admin API over job rows: ``jobs`` (status, listing, cancel/abort, retry) and
``retention`` (pruning finished jobs, dead letters and error history)."""
