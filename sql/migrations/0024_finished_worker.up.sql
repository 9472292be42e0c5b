-- 0024 finished_worker: a finished job's worker_id is cleared by an AFTER
-- UPDATE trigger instead of a BEFORE UPDATE one (which locked every claimed
-- and finished row: sql/schema/02_job_worker_id.sql).
DROP TRIGGER pgjobs_clear_job_worker ON procrastinate_jobs;
CREATE TRIGGER pgjobs_clear_job_worker
    BEFORE INSERT ON procrastinate_jobs
    FOR EACH ROW
    WHEN (NEW.worker_id IS NOT NULL
          AND NEW.status IN ('succeeded', 'failed', 'cancelled', 'aborted'))
    EXECUTE FUNCTION pgjobs.clear_job_worker();

-- After an update, not before: a BEFORE UPDATE row trigger locks each row
-- it may fire for (PostgreSQL fetches the row to evaluate WHEN), one more
-- row lock and WAL record per claimed and per finished job even though
-- pgjobs' own claim and finish never make it fire. The paths it catches
-- write the row a second time instead.
CREATE FUNCTION pgjobs.clear_finished_job_worker()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE procrastinate_jobs SET worker_id = NULL
     WHERE id = NEW.id AND worker_id IS NOT NULL;
    RETURN NULL;
END;
$$;

CREATE TRIGGER pgjobs_clear_finished_job_worker
    AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW
    WHEN (NEW.worker_id IS NOT NULL
          AND NEW.status IN ('succeeded', 'failed', 'cancelled', 'aborted'))
    EXECUTE FUNCTION pgjobs.clear_finished_job_worker();

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_worker') THEN
        GRANT EXECUTE ON FUNCTION pgjobs.clear_finished_job_worker() TO pgjobs_worker;
    END IF;
END;
$$;
