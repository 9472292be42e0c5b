-- Job events (pgjobs.events): each event with its job, its error (failed
-- attempts) and its dead letter, read from where they are written
-- (sql/schema/05_job_events.sql): 'enqueued' from the jobs in id order
-- (their deferred_at), 'started' and 'succeeded' kept in job rows (their
-- started_at, finished_at) by time, every other kind from pgjobs.event_log
-- in id order. A reader's position is the pair of ids (log, job) and the
-- (time, id) of the last event kept in a job row.
-- kind: enqueued, scheduled, started, succeeded, failed (an attempt failed,
-- the job will run again), rescued (its worker was lost), dead_lettered
-- (failed for good), interrupted (a worker shutdown handed it back to the
-- queue without counting an attempt), retried (a failed job run again by hand), cancelled,
-- abort_requested, aborted.

-- name: events_position --
-- Where a reader that starts now starts: after the newest log event, the
-- newest job and now.
SELECT coalesce((SELECT max(id) FROM pgjobs.event_log), 0) AS log_id,
       coalesce((SELECT max(id) FROM procrastinate_jobs), 0) AS job_id,
       now() AS run_at, 0::bigint AS run_id;

-- name: events_position_after --
-- The position right after one event (an id of procrastinate_events: a
-- log event's; for an 'enqueued' event its job's minus 2^62, for a
-- 'started' or 'succeeded' kept in the job row its job's plus 2^62 or
-- 2^62 + 2^61): the other sources' newest ids from before that event's time
-- (walked back from the newest, so cheap for a recent event), and its
-- time. 0: from the start. An event that is gone (pruned): now.
WITH event AS (
    SELECT log.id AS log_id, NULL::bigint AS job_id, log.at, 0::bigint AS run_id
      FROM pgjobs.event_log AS log
     WHERE %(id)s::bigint > 0 AND %(id)s::bigint < 4611686018427387904
       AND log.id = %(id)s::bigint
    UNION ALL
    SELECT NULL, job.id, job.deferred_at, 0
      FROM procrastinate_jobs AS job
     WHERE %(id)s::bigint < 0 AND job.id = %(id)s::bigint + 4611686018427387904
    UNION ALL
    SELECT NULL, NULL, job.started_at, %(id)s::bigint
      FROM procrastinate_jobs AS job
     WHERE %(id)s::bigint >= 4611686018427387904 AND %(id)s::bigint < 6917529027641081856
       AND job.id = %(id)s::bigint - 4611686018427387904
    UNION ALL
    SELECT NULL, NULL, job.finished_at, %(id)s::bigint
      FROM procrastinate_jobs AS job
     WHERE %(id)s::bigint >= 6917529027641081856
       AND job.id = %(id)s::bigint - 6917529027641081856
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
       END AS job_id,
       CASE WHEN %(id)s::bigint = 0 THEN 'epoch'::timestamptz
            ELSE event.at
       END AS run_at,
       coalesce(event.run_id, 0) AS run_id
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
-- (gaps: a transaction that took an id and committed later), the log and
-- the jobs in id order, at most %(limit)s of each; and the events kept in
-- job rows at or after %(since)s, in (time, id) order, at most %(limit)s:
-- each running job's 'started' (from pgjobs_jobs_worker_id_idx: only
-- running and prefetched jobs have a worker), each succeeded job's
-- 'started' and 'succeeded' (from pgjobs_jobs_finished_idx). Every event
-- is returned (the reader tracks what it delivered); source says whose
-- position is; matches says whether the filters hold; from_job marks a
-- logged event that was kept in its job row first.
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
        AND (%(task)s::text IS NULL OR job.task_name = %(task)s)) AS matches,
       coalesce(event.from_job, false) AS from_job
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
        AND (%(task)s::text IS NULL OR job.task_name = %(task)s)),
       false
  FROM procrastinate_jobs AS job
 WHERE job.id > %(after_job)s OR job.id = ANY(%(job_gaps)s::bigint[])
 ORDER BY job.id
 LIMIT %(limit)s)
UNION ALL
(SELECT 'run', NULL::bigint, run.id, run.at, run.kind, run.job_id,
       run.task_name::text, run.queue_name::text, NULL::text, NULL::text, NULL::bigint,
       ((%(queue)s::text IS NULL OR run.queue_name = %(queue)s)
        AND (%(task)s::text IS NULL OR run.task_name = %(task)s)),
       false
  FROM (SELECT job.id + 4611686018427387904 AS id, job.started_at AS at,
               'started' AS kind, job.id AS job_id, job.task_name, job.queue_name
          FROM procrastinate_jobs AS job
         WHERE job.worker_id IS NOT NULL AND job.started_at >= %(since)s
        UNION ALL
        SELECT job.id + 4611686018427387904, job.started_at, 'started', job.id,
               job.task_name, job.queue_name
          FROM procrastinate_jobs AS job
         WHERE job.finished_at >= %(since)s AND job.started_at >= %(since)s
        UNION ALL
        SELECT job.id + 6917529027641081856, job.finished_at, 'succeeded', job.id,
               job.task_name, job.queue_name
          FROM procrastinate_jobs AS job
         WHERE job.finished_at >= %(since)s) AS run
 ORDER BY run.at, run.id
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
    UNION ALL
    -- Kept in job rows: the running jobs' starts, and the newest successes
    -- with their starts.
    (SELECT run.id, run.at, run.kind, run.job_id, run.task_name::text,
            run.queue_name::text, NULL::text, NULL::text, NULL::bigint
      FROM ((SELECT job.id + 4611686018427387904 AS id, job.started_at AS at,
                    'started' AS kind, job.id AS job_id, job.task_name, job.queue_name
               FROM procrastinate_jobs AS job
              WHERE job.worker_id IS NOT NULL AND job.started_at IS NOT NULL)
            UNION ALL
            SELECT job.id + kept.offset_id, kept.at, kept.kind, job.id,
                   job.task_name, job.queue_name
              FROM (SELECT job.id, job.started_at, job.finished_at, job.task_name,
                           job.queue_name
                      FROM procrastinate_jobs AS job
                     WHERE job.finished_at IS NOT NULL
                       AND job.finished_at <= %(upto_at)s
                       AND (%(queue)s::text IS NULL OR job.queue_name = %(queue)s)
                       AND (%(task)s::text IS NULL OR job.task_name = %(task)s)
                     ORDER BY job.finished_at DESC
                     LIMIT %(limit)s) AS job
             CROSS JOIN LATERAL (
                   VALUES (4611686018427387904, job.started_at, 'started'),
                          (6917529027641081856, job.finished_at, 'succeeded'))
                   AS kept(offset_id, at, kind)) AS run
     WHERE run.at IS NOT NULL
       AND run.at <= %(upto_at)s
       AND (%(queue)s::text IS NULL OR run.queue_name = %(queue)s)
       AND (%(task)s::text IS NULL OR run.task_name = %(task)s)
     ORDER BY run.at DESC, run.id DESC
     LIMIT %(limit)s)
    ORDER BY at DESC, id DESC
    LIMIT %(limit)s
) AS newest
ORDER BY at, id;
