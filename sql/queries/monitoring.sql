-- Monitoring: reads the pgjobs views (see sql/schema/4*.sql) so a
-- role that may only read those views (pgjobs_monitor) can run all of these.

-- name: monitoring_set_local --
-- Override a view tunable (pgjobs.stats_window, ...) until the transaction ends.
SELECT set_config(%(setting)s, %(value)s, true) AS value;

-- name: monitoring_queue_stats --
SELECT queue_name, waiting, scheduled, running, succeeded, failed, dead_letters,
       oldest_waiting_s, paused, expired
  FROM pgjobs.queue_stats
 ORDER BY queue_name;

-- name: monitoring_task_stats --
SELECT task_name, started, runs, succeeded, failed, retried, aborted,
       failure_rate, p50_s, p95_s, p99_s, mean_s, max_s, mean_wait_s,
       interrupted, expired
  FROM pgjobs.task_stats
 ORDER BY task_name;

-- name: monitoring_workers --
SELECT worker_id, last_heartbeat, heartbeat_age_s, alive, running_jobs
  FROM pgjobs.workers
 ORDER BY worker_id;

-- name: monitoring_stalled_jobs --
SELECT job_id, task_name, queue_name, worker_id, attempts, started_at,
       last_heartbeat, heartbeat_age_s
  FROM pgjobs.stalled_jobs
 ORDER BY job_id;

-- name: monitoring_breaker_states --
SELECT name, state, failure_count, failure_threshold, opened_at, reopens_at
  FROM pgjobs.breaker_states
 ORDER BY name;

-- name: monitoring_health --
SELECT "check", subject, detail, severity
  FROM pgjobs.health
 ORDER BY severity = 'critical' DESC, "check", subject;
