-- Dashboard (`pgjobs dashboard`): the audit trail of its actions, and the
-- index its failed-jobs filter needs on a table of millions of finished jobs.

-- One row per action taken from the dashboard (retry, cancel, replay...):
-- who, when, what, on which jobs. Written in the action's own transaction.
CREATE TABLE pgjobs.audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    target text NOT NULL,
    job_ids bigint[] NOT NULL DEFAULT '{}',
    detail jsonb NOT NULL DEFAULT '{}'
);

-- Failed, cancelled and aborted jobs newest first (the dashboard's status
-- filter): only jobs that ended badly enter this index, so the hot path
-- (todo -> doing -> succeeded) never writes to it.
CREATE INDEX pgjobs_jobs_ended_badly_idx ON procrastinate_jobs (status, id)
    WHERE status IN ('failed', 'cancelled', 'aborted');

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_worker') THEN
        GRANT SELECT, INSERT ON pgjobs.audit_log TO pgjobs_worker;
        GRANT USAGE, SELECT ON SEQUENCE pgjobs.audit_log_id_seq TO pgjobs_worker;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_monitor') THEN
        -- The audit trail names jobs and actions, never job arguments.
        GRANT SELECT ON pgjobs.audit_log TO pgjobs_monitor;
    END IF;
END;
$$;
