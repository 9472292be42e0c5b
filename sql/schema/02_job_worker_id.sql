-- A worker's shutdown deletes its row, and the foreign key then clears
-- worker_id on its jobs: without this index that is a full table scan.
CREATE INDEX pgjobs_jobs_worker_id_idx ON procrastinate_jobs (worker_id)
    WHERE worker_id IS NOT NULL;

-- A finished job keeps no worker_id: worker_id is the worker running the
-- job, and the foreign key's ON DELETE SET NULL would otherwise rewrite
-- every kept finished job a worker ever ran when that worker exits or is
-- pruned (100,000 jobs: 0.5 s and 30-50 MB of WAL per exit, growing with
-- history). pgjobs.finish_jobs clears it itself; this trigger catches every
-- other path (procrastinate's finish, cancel and retry functions, admin
-- updates). Failed attempts keep their worker in pgjobs.job_errors.
CREATE FUNCTION pgjobs.clear_job_worker()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    NEW.worker_id := NULL;
    RETURN NEW;
END;
$$;

CREATE TRIGGER pgjobs_clear_job_worker
    BEFORE INSERT OR UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW
    WHEN (NEW.worker_id IS NOT NULL
          AND NEW.status IN ('succeeded', 'failed', 'cancelled', 'aborted'))
    EXECUTE FUNCTION pgjobs.clear_job_worker();
