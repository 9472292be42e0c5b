-- name: defer_jobs --
-- Insert jobs; one id per input in input order, NULL where the queueing lock
-- is already held by a waiting job.
SELECT pgjobs.defer_jobs(%(jobs)s::procrastinate_job_to_defer_v1[]) AS ids;

-- name: defer_jobs_json --
-- The same, with the jobs as one jsonb array (pgjobs' own enqueue API).
SELECT pgjobs.defer_jobs_json(%(jobs)s) AS ids;
