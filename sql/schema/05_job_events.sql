-- A job's 'deferred' event lives in the job row (deferred_at) instead of
-- a row of its own: procrastinate wrote one event row per enqueued job,
-- with three index entries and a foreign-key check, which was about 45% of
-- a bulk enqueue's server time and a third of the events' WAL and disk.
-- Every other event (started, succeeded, failed, retries, cancellations,
-- aborts, schedules) stays a row, in pgjobs.event_log (procrastinate's
-- procrastinate_events table, moved and renamed: its ids, indexes and
-- foreign key are unchanged).
--
-- procrastinate_events is now a view with the same columns, so that what
-- reads it (procrastinate's delete_old_jobs, its Django models, psql
-- sessions, pgjobs' views) sees every event as before: the log's rows,
-- plus one 'deferred' row per job with deferred_at, whose id is the job's
-- id minus 2^62: negative, in job order, and below every real id, as the
-- first event of a job was.
-- Writes to the view still work (INSTEAD OF triggers): a 'deferred' event
-- sets the job's deferred_at, any other goes to the log.
--
-- Jobs enqueued before migration 0022 keep their 'deferred' row in the log
-- and have no deferred_at: the migration rewrites no job row.
ALTER TABLE procrastinate_events SET SCHEMA pgjobs;
ALTER TABLE pgjobs.procrastinate_events RENAME TO event_log;
ALTER SEQUENCE pgjobs.procrastinate_events_id_seq RENAME TO event_log_id_seq;

ALTER TABLE procrastinate_jobs ADD COLUMN deferred_at timestamp with time zone;
ALTER TABLE procrastinate_jobs ALTER COLUMN deferred_at SET DEFAULT now();

CREATE VIEW procrastinate_events AS
SELECT log.id, log.job_id, log.type, log.at
  FROM pgjobs.event_log AS log
UNION ALL
SELECT job.id - 4611686018427387904, job.id, 'deferred'::procrastinate_job_event_type,
       job.deferred_at
  FROM procrastinate_jobs AS job
 WHERE job.deferred_at IS NOT NULL;

ALTER VIEW procrastinate_events ALTER COLUMN at SET DEFAULT now();

CREATE FUNCTION pgjobs.write_procrastinate_events()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.id >= 0 AND NEW.type <> 'deferred' THEN
        UPDATE pgjobs.event_log
           SET job_id = NEW.job_id, type = NEW.type, at = NEW.at
         WHERE id = OLD.id;
        NEW.id := OLD.id;
        RETURN NEW;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF OLD.id < 0 THEN
            UPDATE procrastinate_jobs SET deferred_at = NULL WHERE id = OLD.job_id;
        ELSE
            DELETE FROM pgjobs.event_log WHERE id = OLD.id;
        END IF;
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
    END IF;
    IF NEW.type = 'deferred' THEN
        UPDATE procrastinate_jobs SET deferred_at = NEW.at WHERE id = NEW.job_id;
        IF NOT FOUND THEN
            RAISE foreign_key_violation USING
                MESSAGE = format('job %s does not exist', NEW.job_id);
        END IF;
        NEW.id := NEW.job_id - 4611686018427387904;
    ELSE
        INSERT INTO pgjobs.event_log (job_id, type, at)
        VALUES (NEW.job_id, NEW.type, NEW.at)
        RETURNING id INTO NEW.id;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER pgjobs_write_procrastinate_events
    INSTEAD OF INSERT OR UPDATE OR DELETE ON procrastinate_events
    FOR EACH ROW
    EXECUTE FUNCTION pgjobs.write_procrastinate_events();

-- procrastinate's own event triggers write the log directly (through the
-- view they would take a second trigger per event).
CREATE OR REPLACE FUNCTION procrastinate_trigger_function_status_events_update_v1()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    WITH t AS (
        SELECT CASE
            WHEN OLD.status = 'todo'::procrastinate_job_status
                AND NEW.status = 'doing'::procrastinate_job_status
                THEN 'started'::procrastinate_job_event_type
            WHEN OLD.status = 'doing'::procrastinate_job_status
                AND NEW.status = 'todo'::procrastinate_job_status
                THEN 'deferred_for_retry'::procrastinate_job_event_type
            WHEN OLD.status = 'doing'::procrastinate_job_status
                AND NEW.status = 'failed'::procrastinate_job_status
                THEN 'failed'::procrastinate_job_event_type
            WHEN OLD.status = 'doing'::procrastinate_job_status
                AND NEW.status = 'succeeded'::procrastinate_job_status
                THEN 'succeeded'::procrastinate_job_event_type
            WHEN OLD.status = 'todo'::procrastinate_job_status
                AND (
                    NEW.status = 'cancelled'::procrastinate_job_status
                    OR NEW.status = 'failed'::procrastinate_job_status
                    OR NEW.status = 'succeeded'::procrastinate_job_status
                )
                THEN 'cancelled'::procrastinate_job_event_type
            WHEN OLD.status = 'doing'::procrastinate_job_status
                AND NEW.status = 'aborted'::procrastinate_job_status
                THEN 'aborted'::procrastinate_job_event_type
            WHEN OLD.status = 'failed'::procrastinate_job_status
                AND NEW.status = 'todo'::procrastinate_job_status
                THEN 'retried'::procrastinate_job_event_type
            ELSE NULL
        END as event_type
    )
    INSERT INTO pgjobs.event_log(job_id, type)
        SELECT NEW.id, t.event_type
        FROM t
        WHERE t.event_type IS NOT NULL;
	RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION procrastinate_trigger_function_scheduled_events_v1()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO pgjobs.event_log(job_id, type, at)
        VALUES (NEW.id, 'scheduled'::procrastinate_job_event_type, NEW.scheduled_at);

	RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION procrastinate_trigger_abort_requested_events_procedure_v1()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO pgjobs.event_log(job_id, type)
        VALUES (NEW.id, 'abort_requested'::procrastinate_job_event_type);
    RETURN NEW;
END;
$$;
