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
