-- Job events (pgjobs.events): procrastinate_events read in id order, with
-- each event's job, its error (failed attempts) and its dead letter.
-- kind: enqueued, scheduled, started, succeeded, failed (an attempt failed,
-- the job will run again), rescued (its worker was lost), dead_lettered
-- (failed for good), interrupted (a worker shutdown handed it back to the
-- queue without counting an attempt), retried (a failed job run again by hand), cancelled,
-- abort_requested, aborted.

-- name: events_last_id --
SELECT coalesce(max(id), 0) AS id FROM procrastinate_events;

-- name: events_set_statement_timeout --
-- Local to one read's transaction (see dashboard_set_statement_timeout).
SELECT set_config('statement_timeout', %(timeout)s, true) AS value;

-- name: events_listen --
-- procrastinate's channel, notified when jobs are enqueued: a wake-up only
-- (other events are found by the next poll).
LISTEN procrastinate_any_queue_v1;

-- name: events_after --
-- Events after an id, plus the ids not yet visible at an earlier read (gaps:
-- a transaction that took an id and committed later). Every event is
-- returned (the reader tracks ids); matches says whether the filters hold.
SELECT event.id, event.at,
       CASE event.type
            WHEN 'deferred' THEN 'enqueued'
            WHEN 'deferred_for_retry' THEN
                 CASE WHEN error.kind = 'interruption' THEN 'interrupted'
                      WHEN error.error_type = 'WorkerLost' THEN 'rescued' ELSE 'failed' END
            WHEN 'failed' THEN 'dead_lettered'
            ELSE event.type::text
       END AS kind,
       event.job_id, job.task_name::text AS task_name, job.queue_name::text AS queue_name,
       error.error_type, error.error_message, letter.id AS dead_letter_id,
       ((%(queue)s::text IS NULL OR job.queue_name = %(queue)s)
        AND (%(task)s::text IS NULL OR job.task_name = %(task)s)) AS matches
  FROM procrastinate_events AS event
  JOIN procrastinate_jobs AS job ON job.id = event.job_id
  LEFT JOIN LATERAL (
       SELECT e.error_type, e.error_message, e.kind FROM pgjobs.job_errors AS e
        WHERE event.type IN ('deferred_for_retry', 'failed')
          AND e.job_id = event.job_id AND e.failed_at <= event.at
        ORDER BY e.id DESC LIMIT 1) AS error ON true
  LEFT JOIN LATERAL (
       SELECT l.id FROM pgjobs.dead_letters AS l
        WHERE event.type = 'failed' AND l.job_id = event.job_id
        ORDER BY l.id DESC LIMIT 1) AS letter ON true
 WHERE event.id > %(after)s OR event.id = ANY(%(gaps)s::bigint[])
 ORDER BY event.id
 LIMIT %(limit)s;

-- name: events_latest --
-- The newest matching events up to an id, oldest first.
SELECT * FROM (
    SELECT event.id, event.at,
           CASE event.type
                WHEN 'deferred' THEN 'enqueued'
                WHEN 'deferred_for_retry' THEN
                     CASE WHEN error.kind = 'interruption' THEN 'interrupted'
                      WHEN error.error_type = 'WorkerLost' THEN 'rescued' ELSE 'failed' END
                WHEN 'failed' THEN 'dead_lettered'
                ELSE event.type::text
           END AS kind,
           event.job_id, job.task_name::text AS task_name,
           job.queue_name::text AS queue_name,
           error.error_type, error.error_message, letter.id AS dead_letter_id
      FROM procrastinate_events AS event
      JOIN procrastinate_jobs AS job ON job.id = event.job_id
      LEFT JOIN LATERAL (
           SELECT e.error_type, e.error_message, e.kind FROM pgjobs.job_errors AS e
            WHERE event.type IN ('deferred_for_retry', 'failed')
              AND e.job_id = event.job_id AND e.failed_at <= event.at
            ORDER BY e.id DESC LIMIT 1) AS error ON true
      LEFT JOIN LATERAL (
           SELECT l.id FROM pgjobs.dead_letters AS l
            WHERE event.type = 'failed' AND l.job_id = event.job_id
            ORDER BY l.id DESC LIMIT 1) AS letter ON true
     WHERE event.id <= %(upto)s
       AND (%(queue)s::text IS NULL OR job.queue_name = %(queue)s)
       AND (%(task)s::text IS NULL OR job.task_name = %(task)s)
     ORDER BY event.id DESC
     LIMIT %(limit)s
) AS newest
ORDER BY id;
