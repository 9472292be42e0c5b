-- Back to the server's autovacuum defaults and the 0005 health view.
ALTER TABLE procrastinate_jobs RESET (
    autovacuum_vacuum_scale_factor,
    autovacuum_vacuum_insert_scale_factor,
    autovacuum_analyze_scale_factor
);
ALTER TABLE procrastinate_events RESET (
    autovacuum_vacuum_scale_factor,
    autovacuum_vacuum_insert_scale_factor,
    autovacuum_analyze_scale_factor
);

-- Same columns, so CREATE OR REPLACE keeps the grants.
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
       > extract(epoch FROM pgjobs.setting('pgjobs.max_latency', '5 minutes')::interval);

