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
ON CONFLICT (queueing_lock) WHERE status = 'todo' AND queueing_lock IS NOT NULL DO NOTHING
RETURNING id;

-- name: enqueue_insert_jobs --
-- A batch without a queueing lock, sharing everything but its arguments
-- (one pgjobs enqueue_many call): one plain INSERT of the arguments' jsonb
-- array. No conflict is possible, so no ON CONFLICT (its speculative
-- insertion costs a WAL record and an index probe per job), no plpgsql and
-- no composite array. Ids come from the column default, drawn in input
-- order within the statement, so sorted ids are in input order.
WITH inserted AS (
    INSERT INTO procrastinate_jobs
           (queue_name, task_name, priority, lock, args, scheduled_at)
    SELECT %(queue_name)s::varchar, %(task_name)s::varchar, %(priority)s::integer,
           %(lock)s::text, job.args, %(scheduled_at)s::timestamptz
      FROM jsonb_array_elements(%(args)s::jsonb) WITH ORDINALITY AS job(args, ord)
     ORDER BY job.ord
    RETURNING id
)
SELECT coalesce(array_agg(id ORDER BY id), '{}') AS ids FROM inserted;
