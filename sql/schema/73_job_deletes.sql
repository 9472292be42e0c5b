-- What deleting jobs does to the rows that belong to them, once per
-- statement instead of once per job. The foreign keys into
-- procrastinate_jobs cascaded (events, progress, deadlines, traces) or were
-- cleared first (procrastinate's periodic defers, a BEFORE DELETE row
-- trigger) one deleted job at a time: a trigger call and an index probe
-- per job and per table, most of retention's time per job; and each event,
-- progress, deadline or trace row written checked its job with a row lock
-- (a WAL record per event). Now one statement trigger deletes them all for
-- the jobs a statement deleted (and TRUNCATE empties them with the jobs).
-- Without the foreign keys nothing stops a row naming a job that does not
-- exist: pgjobs writes them only beside its job, in the transaction that
-- changes it, and a job id is never reused.
ALTER TABLE pgjobs.event_log DROP CONSTRAINT procrastinate_events_job_id_fkey;
ALTER TABLE pgjobs.job_progress DROP CONSTRAINT job_progress_job_id_fkey;
ALTER TABLE pgjobs.job_deadlines DROP CONSTRAINT job_deadlines_job_id_fkey;
ALTER TABLE pgjobs.job_traces DROP CONSTRAINT job_traces_job_id_fkey;
ALTER TABLE procrastinate_periodic_defers
    DROP CONSTRAINT procrastinate_periodic_defers_job_id_fkey;
DROP TRIGGER procrastinate_trigger_delete_jobs_v1 ON procrastinate_jobs;

-- The rows of pgjobs' tables, as their owner: the roles that delete jobs
-- (pgjobs_worker, an application's own) need no right on them (job_traces
-- has no grants at all), as with the cascades. Only the rows of jobs that
-- no longer exist: callable by anyone, it deletes nothing else. Index
-- probes whatever the first call's plan saw.
CREATE FUNCTION pgjobs.delete_job_rows(p_ids bigint[])
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pgjobs, public
    SET enable_seqscan = off
AS $$
DECLARE
    _gone bigint[] := ARRAY(
        SELECT gone.id FROM unnest(p_ids) AS gone(id)
         WHERE NOT EXISTS (SELECT FROM procrastinate_jobs AS job WHERE job.id = gone.id));
BEGIN
    DELETE FROM pgjobs.event_log WHERE job_id = ANY(_gone);
    DELETE FROM pgjobs.job_progress WHERE job_id = ANY(_gone);
    DELETE FROM pgjobs.job_deadlines WHERE job_id = ANY(_gone);
    DELETE FROM pgjobs.job_traces WHERE job_id = ANY(_gone);
END;
$$;

-- After a TRUNCATE of the jobs: no job is left, so none of their rows.
CREATE FUNCTION pgjobs.truncate_job_rows()
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pgjobs, public
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM procrastinate_jobs) THEN
        TRUNCATE pgjobs.event_log, pgjobs.job_progress, pgjobs.job_deadlines,
                 pgjobs.job_traces;
    END IF;
END;
$$;

-- procrastinate's periodic defers with the deleting role's rights, as
-- procrastinate's row trigger did.
CREATE FUNCTION pgjobs.jobs_deleted()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE procrastinate_periodic_defers AS periodic SET job_id = NULL
      FROM old_jobs WHERE periodic.job_id = old_jobs.id;
    PERFORM pgjobs.delete_job_rows(ARRAY(SELECT old_jobs.id FROM old_jobs));
    RETURN NULL;
END;
$$;

CREATE TRIGGER pgjobs_jobs_deleted
    AFTER DELETE ON procrastinate_jobs
    REFERENCING OLD TABLE AS old_jobs
    FOR EACH STATEMENT
    EXECUTE FUNCTION pgjobs.jobs_deleted();

CREATE FUNCTION pgjobs.jobs_truncated()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE procrastinate_periodic_defers SET job_id = NULL WHERE job_id IS NOT NULL;
    PERFORM pgjobs.truncate_job_rows();
    RETURN NULL;
END;
$$;

CREATE TRIGGER pgjobs_jobs_truncated
    AFTER TRUNCATE ON procrastinate_jobs
    FOR EACH STATEMENT
    EXECUTE FUNCTION pgjobs.jobs_truncated();

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_worker') THEN
        GRANT EXECUTE ON FUNCTION pgjobs.jobs_deleted(), pgjobs.jobs_truncated()
            TO pgjobs_worker;
    END IF;
END;
$$;
