"""Process 2: a worker runs the jobs; each attempt is a span."""

import os

from traced_jobs import app, dump, in_memory_exporter

from pgjobs.testing import run_jobs

exporter = in_memory_exporter()
outcomes = run_jobs(app, os.environ["DATABASE_URL"])
assert [o.status for o in outcomes] == ["succeeded", "succeeded"], outcomes
dump(exporter)
