DROP INDEX IF EXISTS pgjobs_jobs_worker_id_idx;
DROP SCHEMA IF EXISTS pgjobs CASCADE;
