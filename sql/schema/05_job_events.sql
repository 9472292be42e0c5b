-- A job's 'deferred' event lives in the job row (deferred_at) instead of
-- a row of its own: procrastinate wrote one event row per enqueued job,
-- with three index entries and a foreign-key check, which was about 45% of
-- a bulk enqueue's server time and a third of the events' WAL and disk.
-- So do, since migration 0024, the 'started' event of the job's current
-- attempt (started_at: written by pgjobs.fetch_jobs and pgjobs.finish_jobs
-- in the update that claims or starts the job) and the 'succeeded' event
-- of a job that pgjobs.finish_jobs finished (finished_at): the two event
-- rows a job's run wrote were, with their six index entries, 40% of a
-- job's WAL. Every other event (failed, retries, cancellations, aborts,
-- schedules) stays a row, in pgjobs.event_log (procrastinate's
-- procrastinate_events table, moved and renamed: its ids and indexes are
-- unchanged), and so does a 'started' or 'succeeded' event written any
-- other way (procrastinate's own functions).
--
-- procrastinate_events is now a view with the same columns, so that what
-- reads it (procrastinate's delete_old_jobs, its Django models, psql
-- sessions, pgjobs' views) sees every event as before: the log's rows,
-- plus a row per event kept in a job row. Their ids keep a job's events in
-- order: 'deferred' is the job's id minus 2^62 (negative, below every real
-- id, as the first event of a job was), 'started' the job's id plus 2^62
-- and 'succeeded' plus 2^62 + 2^61 (above every logged id). A started_at
-- or finished_at never stays behind a logged event of the same job: the
-- update that logs one (a retry, a failure, an abort request, a manual
-- retry) first moves them into the log, in order (pgjobs.log_job_events).
-- Writes to the view still work (INSTEAD OF triggers): a 'deferred' event
-- sets the job's deferred_at, any other goes to the log.
--
-- Jobs enqueued before migration 0022 keep their 'deferred' row in the log
-- and have no deferred_at, and those started before 0024 their 'started'
-- row: the migrations rewrite no job row.
ALTER TABLE procrastinate_events SET SCHEMA pgjobs;
ALTER TABLE pgjobs.procrastinate_events RENAME TO event_log;
ALTER SEQUENCE pgjobs.procrastinate_events_id_seq RENAME TO event_log_id_seq;

ALTER TABLE procrastinate_jobs ADD COLUMN deferred_at timestamp with time zone;
ALTER TABLE procrastinate_jobs ALTER COLUMN deferred_at SET DEFAULT now();
ALTER TABLE procrastinate_jobs ADD COLUMN started_at timestamp with time zone;
ALTER TABLE procrastinate_jobs ADD COLUMN finished_at timestamp with time zone;
-- A logged 'started' or 'succeeded' event that was kept in its job row
-- first (the event stream delivered it from there).
ALTER TABLE pgjobs.event_log ADD COLUMN from_job boolean;

-- Succeeded jobs by the time they finished: retention, pgjobs.queue_stats,
-- the event stream (every other finished job is found by its logged event,
-- pgjobs_events_type_at_idx).
CREATE INDEX pgjobs_jobs_finished_idx ON procrastinate_jobs (finished_at)
    WHERE finished_at IS NOT NULL;

CREATE VIEW procrastinate_events AS
SELECT log.id, log.job_id, log.type, log.at
  FROM pgjobs.event_log AS log
UNION ALL
SELECT job.id - 4611686018427387904, job.id, 'deferred'::procrastinate_job_event_type,
       job.deferred_at
  FROM procrastinate_jobs AS job
 WHERE job.deferred_at IS NOT NULL
UNION ALL
SELECT job.id + 4611686018427387904, job.id, 'started'::procrastinate_job_event_type,
       job.started_at
  FROM procrastinate_jobs AS job
 WHERE job.started_at IS NOT NULL
UNION ALL
SELECT job.id + 6917529027641081856, job.id, 'succeeded'::procrastinate_job_event_type,
       job.finished_at
  FROM procrastinate_jobs AS job
 WHERE job.finished_at IS NOT NULL;

ALTER VIEW procrastinate_events ALTER COLUMN at SET DEFAULT now();

CREATE FUNCTION pgjobs.write_procrastinate_events()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.id >= 0 AND OLD.id < 4611686018427387904
       AND NEW.type <> 'deferred' THEN
        UPDATE pgjobs.event_log
           SET job_id = NEW.job_id, type = NEW.type, at = NEW.at
         WHERE id = OLD.id;
        NEW.id := OLD.id;
        RETURN NEW;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF OLD.id < 0 THEN
            UPDATE procrastinate_jobs SET deferred_at = NULL WHERE id = OLD.job_id;
        ELSIF OLD.id >= 6917529027641081856 THEN
            UPDATE procrastinate_jobs SET finished_at = NULL WHERE id = OLD.job_id;
        ELSIF OLD.id >= 4611686018427387904 THEN
            UPDATE procrastinate_jobs SET started_at = NULL WHERE id = OLD.job_id;
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

-- A job's started_at and finished_at into the log, in that order, when an
-- update is about to log another event of the job (procrastinate's status
-- and abort triggers, AFTER this one) or to start a new attempt: its
-- status changes, or an abort is requested. pgjobs.finish_jobs (while
-- pgjobs.batch_events is on) writes its own. The moved events were counted
-- in pgjobs.task_rollups when they happened: not again (batch_events on
-- for their insert).
CREATE FUNCTION pgjobs.log_job_events()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    _batch text := current_setting('pgjobs.batch_events', true);
BEGIN
    PERFORM set_config('pgjobs.batch_events', 'on', true);
    INSERT INTO pgjobs.event_log (job_id, type, at, from_job)
    SELECT OLD.id, moved.type, moved.at, true
      FROM (VALUES (1, 'started'::procrastinate_job_event_type, OLD.started_at),
                   (2, 'succeeded'::procrastinate_job_event_type, OLD.finished_at))
           AS moved(n, type, at)
     WHERE moved.at IS NOT NULL
     ORDER BY moved.n;
    PERFORM set_config('pgjobs.batch_events', coalesce(_batch, ''), true);
    NEW.started_at := NULL;
    NEW.finished_at := NULL;
    RETURN NEW;
END;
$$;

CREATE TRIGGER pgjobs_log_job_events
    BEFORE UPDATE OF status, abort_requested ON procrastinate_jobs
    FOR EACH ROW
    WHEN ((OLD.started_at IS NOT NULL OR OLD.finished_at IS NOT NULL)
          AND (NEW.status IS DISTINCT FROM OLD.status
               OR (NEW.abort_requested AND NOT OLD.abort_requested))
          AND current_setting('pgjobs.batch_events', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION pgjobs.log_job_events();

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
