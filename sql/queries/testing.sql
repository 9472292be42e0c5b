-- pgjobs.testing: what the pytest kit reads and the one change it makes
-- (run_jobs makes waiting jobs due now: delays and retry back-offs collapse).

-- name: testing_enqueued_jobs --
SELECT id, queue_name, task_name, priority, lock, queueing_lock, args,
       status::text AS status, scheduled_at, attempts
  FROM procrastinate_jobs
 WHERE (%(task)s::text IS NULL OR task_name = %(task)s::text)
   AND (%(queue)s::text IS NULL OR queue_name = %(queue)s::text)
   AND (%(status)s::text IS NULL OR status::text = %(status)s::text)
 ORDER BY id;

-- name: testing_run_start --
-- The jobs a run_jobs call is about: those waiting now (queue filter), and
-- the id after which every new job (enqueued by a task meanwhile) counts too.
SELECT coalesce(array_agg(id ORDER BY id)
                FILTER (WHERE status = 'todo'
                          AND (%(queues)s::text[] IS NULL
                               OR queue_name = ANY(%(queues)s::text[]))),
                '{}') AS waiting,
       coalesce(max(id), 0) AS last_id
  FROM procrastinate_jobs;

-- name: testing_run_waiting --
-- The run's jobs still waiting; with make_due, their delays end now.
WITH run AS (
    SELECT id
      FROM procrastinate_jobs
     WHERE status = 'todo'
       AND (id = ANY(%(ids)s::bigint[]) OR id > %(last_id)s::bigint)
       AND (%(queues)s::text[] IS NULL OR queue_name = ANY(%(queues)s::text[]))
), due AS (
    UPDATE procrastinate_jobs AS job
       SET scheduled_at = now()
      FROM run
     WHERE job.id = run.id
       AND %(make_due)s::boolean
       AND job.scheduled_at > now()
)
SELECT id FROM run ORDER BY id;

-- name: testing_run_jobs --
SELECT id
  FROM procrastinate_jobs
 WHERE (id = ANY(%(ids)s::bigint[]) OR id > %(last_id)s::bigint)
   AND (%(queues)s::text[] IS NULL OR queue_name = ANY(%(queues)s::text[]))
 ORDER BY id;
