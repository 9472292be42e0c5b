-- Start-by deadlines (pgjobs.enqueueing.deadlines, pgjobs.worker.expiry).

-- name: deadlines_store --
SELECT pgjobs.store_job_deadlines(%(ids)s::bigint[], %(expires_at)s);

-- name: deadlines_expire --
-- End up to limit waiting jobs whose deadline passed (see pgjobs.expire_jobs).
SELECT id FROM pgjobs.expire_jobs(%(limit)s) AS id;

-- name: deadlines_forget --
-- A job retried by hand runs whatever its deadline was.
DELETE FROM pgjobs.job_deadlines WHERE job_id = %(job_id)s;
