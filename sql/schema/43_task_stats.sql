-- One row per task that started or ended an attempt, or had a job expire
-- unstarted (expired: see pgjobs.job_deadlines), in the window.
-- Run time: from an attempt's 'started' event to its end ('succeeded',
-- 'failed', 'deferred_for_retry' or 'aborted'); wait: from the job being
-- ready (queued, scheduled time, retry time) to its 'started' event.
-- interrupted: attempts a worker shutdown handed back to the queue without
-- counting them (their 'deferred_for_retry' event has an 'interruption' row
-- of the same transaction in pgjobs.job_errors); not failures.
-- Read from pgjobs.task_rollups (what it costs does not grow with the
-- attempts in the window): the window is whole minutes, from the start of
-- the minute now() - pgjobs.stats_window falls in. Counts, mean_s, max_s
-- and mean_wait_s are exact. p50_s, p95_s and p99_s come from the run-time
-- histogram, kept per 10 minutes: of the runs since the start of the
-- 10-minute block the window starts in (up to 10 minutes more than the
-- window), they interpolate between ranks as percentile_cont does, each
-- rank taken for the middle of its run-time bucket (pgjobs.run_time_bucket),
-- so within 4.9% of the exact percentile of those runs, and never outside
-- the window's shortest and longest run.
CREATE VIEW pgjobs.task_stats AS
WITH totals AS (
    SELECT rollup.task_name,
           sum(rollup.started)::bigint AS started,
           sum(rollup.waited) AS waited,
           sum(rollup.wait_s) AS wait_s,
           sum(rollup.runs)::bigint AS runs,
           sum(rollup.succeeded)::bigint AS succeeded,
           sum(rollup.failed)::bigint AS failed,
           sum(rollup.retried)::bigint AS retried,
           sum(rollup.aborted)::bigint AS aborted,
           sum(rollup.interrupted)::bigint AS interrupted,
           sum(rollup.expired)::bigint AS expired,
           sum(rollup.timed) AS timed,
           sum(rollup.run_s) AS run_s,
           min(rollup.min_run_s) AS min_run_s,
           max(rollup.max_run_s) AS max_run_s
      FROM pgjobs.task_rollups AS rollup
     -- A plain stable expression, not a subquery: the planner estimates the
     -- window from it (a subquery's value is unknown at plan time, taken
     -- for a third of the table: a scan of every row kept, 0.7 s with a
     -- month of rollups), and the index scan computes it once.
     WHERE rollup.minute >= date_trunc(
               'minute', now() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval)
       AND rollup.bucket < 0
     GROUP BY rollup.task_name
), histogram AS (
    -- Per task and bucket, the ranks (0-based, in run-time order) it holds,
    -- [below, upto), and the task's number of runs in the histogram.
    SELECT buckets.task_name, buckets.bucket,
           sum(buckets.n) OVER ranks - buckets.n AS below,
           sum(buckets.n) OVER ranks AS upto,
           sum(buckets.n) OVER (PARTITION BY buckets.task_name) AS n
      FROM (SELECT rollup.task_name, rollup.bucket, sum(rollup.runs) AS n
              FROM pgjobs.task_rollups AS rollup
             WHERE rollup.minute >= pgjobs.run_time_block(
                       now() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval)
               AND rollup.bucket >= 0
             GROUP BY rollup.task_name, rollup.bucket) AS buckets
    WINDOW ranks AS (PARTITION BY buckets.task_name ORDER BY buckets.bucket)
), ranks AS (
    -- percentile_cont's position of each percentile: between ranks
    -- floor(h) and ceil(h).
    SELECT counted.task_name, wanted.i, wanted.p * (counted.n - 1) AS h
      FROM (SELECT DISTINCT histogram.task_name, histogram.n FROM histogram) AS counted
     CROSS JOIN unnest(ARRAY[0.5, 0.95, 0.99]) WITH ORDINALITY AS wanted(p, i)
), percentiles AS (
    SELECT ranks.task_name,
           array_agg(ranks.lo_s + (ranks.h - floor(ranks.h)) * (ranks.hi_s - ranks.lo_s)
                     ORDER BY ranks.i) AS estimates
      FROM (SELECT ranks.task_name, ranks.i, ranks.h,
                   max(pgjobs.run_time_bucket_s(histogram.bucket))
                       FILTER (WHERE floor(ranks.h) >= histogram.below
                                 AND floor(ranks.h) < histogram.upto) AS lo_s,
                   max(pgjobs.run_time_bucket_s(histogram.bucket))
                       FILTER (WHERE ceil(ranks.h) >= histogram.below
                                 AND ceil(ranks.h) < histogram.upto) AS hi_s
              FROM ranks
              JOIN histogram USING (task_name)
             GROUP BY ranks.task_name, ranks.i, ranks.h) AS ranks
     GROUP BY ranks.task_name
)
SELECT totals.task_name,
       totals.started,
       totals.runs,
       totals.succeeded,
       totals.failed,
       totals.retried,
       totals.aborted,
       (totals.failed + totals.retried)::double precision / nullif(totals.runs, 0)
           AS failure_rate,
       CASE WHEN totals.timed > 0 THEN
           least(greatest(percentiles.estimates[1], totals.min_run_s), totals.max_run_s)
       END AS p50_s,
       CASE WHEN totals.timed > 0 THEN
           least(greatest(percentiles.estimates[2], totals.min_run_s), totals.max_run_s)
       END AS p95_s,
       CASE WHEN totals.timed > 0 THEN
           least(greatest(percentiles.estimates[3], totals.min_run_s), totals.max_run_s)
       END AS p99_s,
       totals.run_s / nullif(totals.timed, 0) AS mean_s,
       totals.max_run_s AS max_s,
       totals.wait_s / nullif(totals.waited, 0) AS mean_wait_s,
       totals.interrupted,
       totals.expired
  FROM totals
  LEFT JOIN percentiles USING (task_name);
