-- Job events (pgjobs.events): each event with its job, its error (failed
-- attempts) and its dead letter, read from where they are written
-- (sql/schema/05_job_events.sql): 'enqueued' from the jobs in id order
-- (their deferred_at), every other kind from pgjobs.event_log in id order.
-- A reader's position is the pair of ids (log, job).
-- kind: enqueued, scheduled, started, succeeded, failed (an attempt failed,
-- the job will run again), rescued (its worker was lost), dead_lettered
-- (failed for good), interrupted (a worker shutdown handed it back to the
-- queue without counting an attempt), retried (a failed job run again by hand), cancelled,
-- abort_requested, aborted.

-- name: events_position --
-- Where a reader that starts now starts: after the newest log event and
-- the newest job.
SELECT coalesce((SELECT max(id) FROM pgjobs.event_log), 0) AS log_id,
       coalesce((SELECT max(id) FROM procrastinate_jobs), 0) AS job_id;

-- name: events_position_after --
-- The position right after one event (an id of procrastinate_events: a
-- log event's, or for an 'enqueued' event its job's minus 2^62): the other
-- source's newest id from before that event's time (walked back from the
-- newest, so cheap for a recent event). 0: from the start. An event that
-- is gone (pruned): now.
WITH event AS (
    SELECT log.id AS log_id, NULL::bigint AS job_id, log.at
      FROM pgjobs.event_log AS log
     WHERE %(id)s::bigint > 0 AND log.id = %(id)s::bigint
    UNION ALL
    SELECT NULL, job.id, job.deferred_at
      FROM procrastinate_jobs AS job
     WHERE %(id)s::bigint < 0 AND job.id = %(id)s::bigint + 4611686018427387904
)
SELECT CASE WHEN %(id)s::bigint = 0 THEN 0
            WHEN event.log_id IS NOT NULL THEN event.log_id
            ELSE coalesce((SELECT log.id FROM pgjobs.event_log AS log
                            WHERE log.at < event.at
                            ORDER BY log.id DESC LIMIT 1), 0)
       END AS log_id,
       CASE WHEN %(id)s::bigint = 0 THEN 0
            WHEN event.job_id IS NOT NULL THEN event.job_id
            ELSE coalesce((SELECT job.id FROM procrastinate_jobs AS job
                            WHERE job.deferred_at <= event.at
                            ORDER BY job.id DESC LIMIT 1), 0)
       END AS job_id
  FROM (SELECT 1) AS one
  LEFT JOIN event ON true
 WHERE %(id)s::bigint = 0 OR event.at IS NOT NULL;

-- name: events_set_statement_timeout --
-- Local to one read's transaction (see dashboard_set_statement_timeout).
SELECT set_config('statement_timeout', %(timeout)s, true) AS value;

-- name: events_listen --
-- procrastinate's channel, notified when jobs are enqueued: a wake-up only
-- (other events are found by the next poll).
LISTEN procrastinate_any_queue_v1;

-- name: events_after --
-- Events after a position, plus the ids not yet visible at an earlier read
-- (gaps: a transaction that took an id and committed later), each source
-- in id order, at most %(limit)s of each. Every event is returned (the
-- reader tracks ids); source says whose id position is; matches says
-- whether the filters hold.
(SELECT 'log' AS source, event.id AS position, event.id, event.at,
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
  FROM pgjobs.event_log AS event
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
 LIMIT %(limit)s)
UNION ALL
(SELECT 'job', job.id, job.id - 4611686018427387904, job.deferred_at, 'enqueued',
       job.id, job.task_name::text, job.queue_name::text,
       NULL::text, NULL::text, NULL::bigint,
       job.deferred_at IS NOT NULL AND ((%(queue)s::text IS NULL OR job.queue_name = %(queue)s)
        AND (%(task)s::text IS NULL OR job.task_name = %(task)s))
  FROM procrastinate_jobs AS job
 WHERE job.id > %(after_job)s OR job.id = ANY(%(job_gaps)s::bigint[])
 ORDER BY job.id
 LIMIT %(limit)s);

-- name: events_latest --
-- The newest matching events up to a position, oldest first.
SELECT * FROM (
    (SELECT event.id, event.at,
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
      FROM pgjobs.event_log AS event
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
     LIMIT %(limit)s)
    UNION ALL
    (SELECT job.id - 4611686018427387904, job.deferred_at, 'enqueued', job.id, job.task_name::text,
            job.queue_name::text, NULL::text, NULL::text, NULL::bigint
      FROM procrastinate_jobs AS job
     WHERE job.id <= %(upto_job)s
       AND job.deferred_at IS NOT NULL
       AND (%(queue)s::text IS NULL OR job.queue_name = %(queue)s)
       AND (%(task)s::text IS NULL OR job.task_name = %(task)s)
     ORDER BY job.id DESC
     LIMIT %(limit)s)
    ORDER BY at DESC, id DESC
    LIMIT %(limit)s
) AS newest
ORDER BY at, id;
