"""Benchmark harness: stock procrastinate vs pgqueuer (vs pgjobs). See README.md."""
