-- 0024 finished_worker, undone: the BEFORE INSERT OR UPDATE trigger back.
DROP TRIGGER pgjobs_clear_finished_job_worker ON procrastinate_jobs;
DROP FUNCTION pgjobs.clear_finished_job_worker();
DROP TRIGGER pgjobs_clear_job_worker ON procrastinate_jobs;
CREATE TRIGGER pgjobs_clear_job_worker
    BEFORE INSERT OR UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW
    WHEN (NEW.worker_id IS NOT NULL
          AND NEW.status IN ('succeeded', 'failed', 'cancelled', 'aborted'))
    EXECUTE FUNCTION pgjobs.clear_job_worker();
