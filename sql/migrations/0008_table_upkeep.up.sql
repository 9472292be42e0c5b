-- Table upkeep: queue-friendly autovacuum thresholds on the jobs and events
-- tables, and a health check for dead rows piling up.

-- Queue tables churn: every job is inserted, updated twice and deleted by
-- retention, so dead rows pile up far faster than in an ordinary table.
-- Autovacuum's defaults wait for 20% of a table to be dead (200,000 rows at
-- 1M finished jobs) and claims walk those dead rows meanwhile. These
-- thresholds vacuum at 1% (inserts at 5%) and analyze at 2%.
ALTER TABLE procrastinate_jobs SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02
);
ALTER TABLE procrastinate_events SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02
);

-- pgjobs.health gains the dead_rows check (pgjobs.max_dead_rows, default
-- 100000, or a tenth of the live rows when more). CREATE OR REPLACE keeps
-- the grants.
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

