-- name: enqueue_defer_jobs --
-- Insert jobs; one id per input in input order, NULL where the queueing lock
-- is already held by a waiting job.
SELECT pgjobs.defer_jobs(%(jobs)s::procrastinate_job_to_defer_v1[]) AS ids;

-- name: enqueue_defer_jobs_json --
-- The same, with the jobs as one jsonb array (pgjobs' own enqueue API).
SELECT pgjobs.defer_jobs_json(%(jobs)s) AS ids;

-- name: enqueue_defer_one --
-- One job: the plain INSERT pgjobs.defer_jobs runs, without its set-up (the
-- single-job enqueue is the common case). No row when the queueing lock is
-- already held by a waiting job.
INSERT INTO procrastinate_jobs
       (queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at)
VALUES (%(queue_name)s, %(task_name)s, %(priority)s, %(lock)s, %(queueing_lock)s,
        %(args)s, %(scheduled_at)s)
ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING
RETURNING id;
