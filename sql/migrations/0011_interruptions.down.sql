-- Back to revision 0010: health without interrupted jobs, task_stats
-- without its interrupted column, error rows without their kind.
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

DROP VIEW pgjobs.health_interrupted_jobs;

-- A view loses no column with CREATE OR REPLACE: recreate it (and its grant).
DROP VIEW pgjobs.task_stats;
-- One row per task that started or ended an attempt in the window.
-- Run time: from an attempt's 'started' event to its end ('succeeded',
-- 'failed', 'deferred_for_retry' or 'aborted'); wait: from the job being
-- ready (queued, scheduled time, retry time) to its 'started' event.
CREATE VIEW pgjobs.task_stats AS
WITH ended AS (
    SELECT job.task_name,
           event.type,
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
       waits.mean_wait_s
  FROM runs
  FULL JOIN waits USING (task_name);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_monitor') THEN
        GRANT SELECT ON pgjobs.task_stats TO pgjobs_monitor;
    END IF;
END;
$$;

DROP FUNCTION pgjobs.interrupt_job(
    bigint, bigint, text, integer, timestamptz, integer,
    character varying, character varying, boolean);
DROP INDEX pgjobs.job_errors_interruptions_idx;
ALTER TABLE pgjobs.job_errors DROP COLUMN kind;
