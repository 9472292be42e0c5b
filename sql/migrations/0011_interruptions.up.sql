-- Deploys: a job still running when its worker's shutdown grace ends goes
-- back to the queue with an 'interruption' row in its error history
-- (pgjobs.interrupt_job, called by pgjobs.interruptions); task_stats counts
-- those attempts apart; health reports the jobs that outlive every grace.

ALTER TABLE pgjobs.job_errors
    ADD COLUMN kind text NOT NULL DEFAULT 'error'
        CHECK (kind IN ('error', 'interruption'));
CREATE INDEX job_errors_interruptions_idx ON pgjobs.job_errors (job_id)
    WHERE error_type = 'WorkerShutdown';

-- A job its worker p_worker_id was still running when that worker's
-- shutdown grace ended (pgjobs.interruptions). Only a job still 'doing'
-- under that worker is touched: applied is false otherwise (rescued as
-- stalled meanwhile, or not this worker's), so a late finish of a job
-- handed back never overwrites its new state. Every interruption is a
-- 'WorkerShutdown' row in the job's error history; ``interruptions`` counts
-- them, this one included. Below p_max_interruptions, the job goes back to
-- the queue to run again at once (status 'todo', scheduled time kept, no
-- attempt counted, row kind 'interruption'); a job whose abort was
-- requested ends 'aborted' instead. The p_max_interruptions-th interruption
-- and every later one are failed attempts (row kind 'error'), handled as
-- pgjobs.fail_job_attempt does: retried at p_retry_at, or failed for good
-- (dead letter) when p_retry_at is NULL.
CREATE FUNCTION pgjobs.interrupt_job(
    p_job_id bigint,
    p_worker_id bigint,
    p_error_message text,
    p_max_interruptions integer,
    p_retry_at timestamptz,
    p_new_priority integer,
    p_new_queue_name character varying,
    p_new_lock character varying,
    p_delete_job boolean
)
    RETURNS TABLE (
        applied boolean, status text, interruptions integer, dead_letter_id bigint)
    LANGUAGE plpgsql
AS $$
DECLARE
    _job procrastinate_jobs;
    _count integer;
    _status procrastinate_job_status;
BEGIN
    SELECT * INTO _job FROM procrastinate_jobs AS job
     WHERE job.id = p_job_id AND job.status = 'doing'
       AND job.worker_id = p_worker_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, NULL::text, NULL::integer, NULL::bigint;
        RETURN;
    END IF;
    SELECT count(*) + 1 INTO _count FROM pgjobs.job_errors AS e
     WHERE e.job_id = p_job_id AND e.error_type = 'WorkerShutdown';

    IF _count >= p_max_interruptions AND NOT _job.abort_requested THEN
        RETURN QUERY
        SELECT attempt.applied, attempt.status, _count, attempt.dead_letter_id
          FROM pgjobs.fail_job_attempt(
               p_job_id, 'WorkerShutdown',
               p_error_message || format(
                   ' (interruption %s, counted as a failed attempt:'
                   ' PGJOBS_MAX_INTERRUPTIONS=%s)', _count, p_max_interruptions),
               NULL, p_retry_at,
               p_new_priority, p_new_queue_name, p_new_lock, p_delete_job,
               NULL) AS attempt;
        RETURN;
    END IF;

    INSERT INTO pgjobs.job_errors
           (job_id, task_name, queue_name, attempt, error_type, error_message,
            traceback, worker_id, kind)
    VALUES (_job.id, _job.task_name, _job.queue_name, _job.attempts + 1,
            'WorkerShutdown',
            p_error_message || format(
                ' (interruption %s, not counted as an attempt:'
                ' PGJOBS_MAX_INTERRUPTIONS=%s)', _count, p_max_interruptions),
            NULL,
            _job.worker_id, 'interruption');
    UPDATE procrastinate_jobs AS job
       SET status = CASE WHEN job.abort_requested
                         THEN 'aborted'::procrastinate_job_status
                         ELSE 'todo'::procrastinate_job_status END,
           worker_id = NULL,
           abort_requested = false
     WHERE job.id = p_job_id
    RETURNING job.status INTO _status;
    RETURN QUERY SELECT true, _status::text, _count, NULL::bigint;
END;
$$;

-- One row per task that started or ended an attempt in the window.
-- Run time: from an attempt's 'started' event to its end ('succeeded',
-- 'failed', 'deferred_for_retry' or 'aborted'); wait: from the job being
-- ready (queued, scheduled time, retry time) to its 'started' event.
-- interrupted: attempts a worker shutdown handed back to the queue without
-- counting them (their 'deferred_for_retry' event has an 'interruption' row
-- of the same transaction in pgjobs.job_errors); not failures.
CREATE OR REPLACE VIEW pgjobs.task_stats AS
WITH ended AS (
    SELECT job.task_name,
           CASE WHEN event.type = 'deferred_for_retry' AND EXISTS (
                    SELECT 1 FROM pgjobs.job_errors AS interruption
                     WHERE interruption.job_id = event.job_id
                       AND interruption.kind = 'interruption'
                       AND interruption.failed_at = event.at)
                THEN 'interrupted'
                ELSE event.type::text
           END AS type,
           extract(epoch FROM event.at - started.at)::double precision AS run_s
      FROM procrastinate_events AS event
      JOIN procrastinate_jobs AS job ON job.id = event.job_id
      CROSS JOIN LATERAL (
           SELECT max(s.at) AS at
             FROM procrastinate_events AS s
            WHERE s.job_id = event.job_id AND s.type = 'started' AND s.at <= event.at
      ) AS started
     WHERE event.type IN ('succeeded', 'failed', 'deferred_for_retry', 'aborted')
       AND event.at >= now() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval
), runs AS (
    SELECT task_name,
           count(*) AS runs,
           count(*) FILTER (WHERE type = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE type = 'failed') AS failed,
           count(*) FILTER (WHERE type = 'deferred_for_retry') AS retried,
           count(*) FILTER (WHERE type = 'aborted') AS aborted,
           count(*) FILTER (WHERE type = 'interrupted') AS interrupted,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY run_s)
               AS run_percentiles,
           avg(run_s) AS mean_run_s,
           max(run_s) AS max_run_s
      FROM ended
     GROUP BY task_name
), waits AS (
    SELECT job.task_name,
           count(*) AS started,
           avg(extract(epoch FROM event.at - ready.at))::double precision AS mean_wait_s
      FROM procrastinate_events AS event
      JOIN procrastinate_jobs AS job ON job.id = event.job_id
      CROSS JOIN LATERAL (
           SELECT max(r.at) AS at
             FROM procrastinate_events AS r
            WHERE r.job_id = event.job_id
              AND r.type IN ('deferred', 'deferred_for_retry', 'retried', 'scheduled')
              AND r.at <= event.at
      ) AS ready
     WHERE event.type = 'started'
       AND event.at >= now() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval
     GROUP BY job.task_name
)
SELECT task_name::text AS task_name,
       coalesce(waits.started, 0) AS started,
       coalesce(runs.runs, 0) AS runs,
       coalesce(runs.succeeded, 0) AS succeeded,
       coalesce(runs.failed, 0) AS failed,
       coalesce(runs.retried, 0) AS retried,
       coalesce(runs.aborted, 0) AS aborted,
       (runs.failed + runs.retried)::double precision / nullif(runs.runs, 0)
           AS failure_rate,
       runs.run_percentiles[1] AS p50_s,
       runs.run_percentiles[2] AS p95_s,
       runs.run_percentiles[3] AS p99_s,
       runs.mean_run_s AS mean_s,
       runs.max_run_s AS max_s,
       waits.mean_wait_s,
       coalesce(runs.interrupted, 0) AS interrupted
  FROM runs
  FULL JOIN waits USING (task_name);

-- Jobs still waiting or running whose interruptions by worker shutdowns
-- reached PGJOBS_MAX_INTERRUPTIONS (one of their 'WorkerShutdown' rows
-- counted as a failed attempt: see pgjobs.interrupt_job): they run longer
-- than the workers' shutdown grace, so every deploy interrupts them.
CREATE VIEW pgjobs.health_interrupted_jobs AS
SELECT 'interrupted_job'::text AS "check",
       'job ' || job.id AS subject,
       format('%s on queue %s: interrupted by %s worker shutdowns (last at %s):'
              || ' it outlives the shutdown grace (PGJOBS_SHUTDOWN_GRACE), so'
              || ' each interruption now counts as a failed attempt'
              || ' (%s attempt(s) so far)',
              job.task_name, job.queue_name, interrupted.interruptions,
              interrupted.last_at, job.attempts) AS detail,
       'warning'::text AS severity
  FROM (SELECT e.job_id, count(*) AS interruptions, max(e.failed_at) AS last_at
          FROM pgjobs.job_errors AS e
         WHERE e.error_type = 'WorkerShutdown'
         GROUP BY e.job_id
        HAVING count(*) FILTER (WHERE e.kind = 'error') > 0) AS interrupted
  JOIN procrastinate_jobs AS job ON job.id = interrupted.job_id
 WHERE job.status IN ('todo', 'doing');

-- One row per problem; no rows when all is well.
CREATE OR REPLACE VIEW pgjobs.health AS
SELECT 'stalled_job'::text AS "check",
       'job ' || stalled.job_id AS subject,
       format('%s on queue %s: %s', stalled.task_name, stalled.queue_name,
              CASE WHEN stalled.last_heartbeat IS NULL
                   THEN 'its worker is gone'
                   ELSE format('worker %s silent for %s s', stalled.worker_id,
                               round(stalled.heartbeat_age_s::numeric))
              END) AS detail,
       'critical'::text AS severity
  FROM pgjobs.stalled_jobs AS stalled
UNION ALL
SELECT "check", subject, detail, severity
  FROM pgjobs.health_overdue_schedules
UNION ALL SELECT "check", subject, detail, severity FROM pgjobs.health_interrupted_jobs
UNION ALL
SELECT 'new_dead_letters',
       'task ' || letters.task_name,
       format('%s new dead letter(s) in the last %s (threshold %s)',
              letters.count,
              pgjobs.setting('pgjobs.dead_letter_window', '1 hour')::interval,
              pgjobs.setting('pgjobs.dead_letter_threshold', '0')::integer),
       'warning'
  FROM (SELECT letter.task_name, count(*) AS count
          FROM pgjobs.dead_letters AS letter
         WHERE letter.replayed_at IS NULL
           AND letter.created_at >= now()
               - pgjobs.setting('pgjobs.dead_letter_window', '1 hour')::interval
         GROUP BY letter.task_name) AS letters
 WHERE letters.count > pgjobs.setting('pgjobs.dead_letter_threshold', '0')::integer
UNION ALL
SELECT 'queue_latency',
       'queue ' || queue.queue_name,
       format('oldest waiting job is %s s old (threshold %s)',
              round(queue.oldest_waiting_s::numeric),
              pgjobs.setting('pgjobs.max_latency', '5 minutes')::interval),
       'warning'
  FROM pgjobs.queue_stats AS queue
 WHERE queue.oldest_waiting_s
       > extract(epoch FROM pgjobs.setting('pgjobs.max_latency', '5 minutes')::interval)
UNION ALL
SELECT 'dead_rows',
       'table ' || stat.relid::regclass::text,
       format('%s dead row(s) beside %s live: %s',
              stat.n_dead_tup, stat.n_live_tup,
              CASE WHEN current_setting('autovacuum') = 'off'
                   THEN 'autovacuum is off on this server; turn it on or VACUUM '
                        || stat.relid::regclass::text || ' (claims slow down as dead rows pile up)'
                   WHEN 'autovacuum_enabled=false' = ANY(class.reloptions)
                   THEN 'autovacuum is disabled on this table; enable it or VACUUM '
                        || stat.relid::regclass::text
                   ELSE 'autovacuum is not keeping up (last autovacuum '
                        || coalesce(stat.last_autovacuum::text, 'never') || ')'
              END),
       'warning'
  FROM pg_stat_user_tables AS stat
  JOIN pg_class AS class ON class.oid = stat.relid
 WHERE stat.relid IN ('procrastinate_jobs'::regclass, 'procrastinate_events'::regclass)
   AND stat.n_dead_tup > greatest(
           pgjobs.setting('pgjobs.max_dead_rows', '100000')::bigint,
           stat.n_live_tup / 10);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_worker') THEN
        GRANT EXECUTE ON FUNCTION pgjobs.interrupt_job(
            bigint, bigint, text, integer, timestamptz, integer,
            character varying, character varying, boolean) TO pgjobs_worker;
    END IF;
END;
$$;
