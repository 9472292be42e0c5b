-- Failed, cancelled and aborted jobs newest first (the dashboard's status
-- filter): only jobs that ended badly enter this index, so the hot path
-- (todo -> doing -> succeeded) never writes to it.
CREATE INDEX pgjobs_jobs_ended_badly_idx ON procrastinate_jobs (status, id)
    WHERE status IN ('failed', 'cancelled', 'aborted');
