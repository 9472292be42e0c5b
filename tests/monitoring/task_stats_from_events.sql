-- pgjobs.task_stats as it was before the rollups (migration 0020): the
-- events of the window aggregated on every read. The rollup view must give
-- the same counts, means and maxima, and percentiles within 5%
-- (tests/monitoring/test_task_rollups.py).
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
), expirations AS (
    SELECT job.task_name, count(*) AS expired
      FROM pgjobs.job_deadlines AS deadline
      JOIN procrastinate_jobs AS job ON job.id = deadline.job_id
     WHERE deadline.expired_at
           >= now() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval
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
       coalesce(runs.interrupted, 0) AS interrupted,
       coalesce(expirations.expired, 0) AS expired
  FROM runs
  FULL JOIN waits USING (task_name)
  FULL JOIN expirations USING (task_name)
