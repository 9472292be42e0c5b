-- Retention: what pgjobs.retention deletes. Only finished jobs are ever
-- listed or deleted; todo and doing jobs are never touched.

-- name: retention_jobs_finished_before --
-- Jobs in one finished status whose last event is older than the cutoff:
-- finished strictly before now - older_than. Oldest first, at most `limit`
-- of them (NULL: all), so a deletion lists one batch at a time. A job's
-- status and its finishing event share their name ('succeeded', 'failed',
-- 'cancelled', 'aborted'): a success kept in its job row (finished_at,
-- sql/schema/05_job_events.sql) is found from pgjobs_jobs_finished_idx,
-- every other from the (type, at) index of the log. Each walk goes from its
-- oldest entry and stops after `limit` rows: a batch costs the same
-- whatever the table holds (listing with DISTINCT and an anti-join read
-- every recent event for each batch: 125 ms per 1,000 jobs at 80k jobs,
-- against 5 ms). The last logged event is looked up per job (a subquery
-- the planner cannot turn into a hash over all recent events); a job's
-- 'deferred' and 'started' events (its deferred_at, started_at) are never
-- later than its end.
WITH params AS NOT MATERIALIZED (  -- inlined in each walk: a known bound
    SELECT coalesce(%(now)s::timestamptz, now()) - %(older_than)s::interval AS cutoff
)
SELECT ended.id FROM (
    (SELECT job.id, job.finished_at AS at
       FROM params, procrastinate_jobs AS job
      WHERE %(status)s::text = 'succeeded'
        AND job.finished_at < params.cutoff
        AND job.status = 'succeeded'
        AND coalesce((SELECT max(later.at)
                        FROM pgjobs.event_log AS later
                       WHERE later.job_id = job.id), '-infinity') < params.cutoff
      ORDER BY job.finished_at
      LIMIT %(limit)s)
    UNION ALL
    (SELECT event.job_id, event.at
       FROM params, pgjobs.event_log AS event
       JOIN procrastinate_jobs AS job ON job.id = event.job_id
      WHERE event.type = %(status)s::text::procrastinate_job_event_type
        AND event.at < params.cutoff
        AND job.status = %(status)s::text::procrastinate_job_status
        AND job.finished_at IS NULL
        AND (SELECT max(later.at)
               FROM pgjobs.event_log AS later
              WHERE later.job_id = job.id) < params.cutoff
      ORDER BY event.at
      LIMIT %(limit)s)
) AS ended
 ORDER BY ended.at
 LIMIT %(limit)s;

-- name: retention_jobs_beyond_keep --
-- Per task, the jobs in the given statuses after the `keep` most recently
-- enqueued ones.
SELECT ranked.id
  FROM (SELECT job.id,
               row_number() OVER (PARTITION BY job.task_name ORDER BY job.id DESC)
                   AS newest
          FROM procrastinate_jobs AS job
         WHERE job.status = ANY(%(statuses)s::procrastinate_job_status[])) AS ranked
 WHERE ranked.newest > %(keep)s;

-- name: retention_delete_jobs --
-- The status is checked again: a job retried since it was listed stays.
WITH deleted AS (
    DELETE FROM procrastinate_jobs
     WHERE id = ANY(%(ids)s::bigint[])
       AND status = ANY(%(statuses)s::procrastinate_job_status[])
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

-- name: retention_count_dead_letters --
SELECT count(*) AS count
  FROM pgjobs.dead_letters
 WHERE created_at < coalesce(%(now)s::timestamptz, now()) - %(older_than)s::interval;

-- name: retention_delete_dead_letters --
WITH batch AS (
    SELECT id
      FROM pgjobs.dead_letters
     WHERE created_at < coalesce(%(now)s::timestamptz, now()) - %(older_than)s::interval
     ORDER BY id
     LIMIT %(batch_size)s
       FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM pgjobs.dead_letters AS letter
     USING batch
     WHERE letter.id = batch.id
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

-- name: retention_count_stats_rollups --
-- pgjobs.task_stats' per-minute rollups (sql/schema/43_task_rollups.sql).
SELECT count(*) AS count
  FROM pgjobs.task_rollups
 WHERE minute < coalesce(%(now)s::timestamptz, now()) - %(older_than)s::interval;

-- name: retention_delete_stats_rollups --
WITH batch AS (
    SELECT minute, task_name, bucket, shard
      FROM pgjobs.task_rollups
     WHERE minute < coalesce(%(now)s::timestamptz, now()) - %(older_than)s::interval
     ORDER BY minute
     LIMIT %(batch_size)s
       FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM pgjobs.task_rollups AS rollup
     USING batch
     WHERE (rollup.minute, rollup.task_name, rollup.bucket, rollup.shard)
           = (batch.minute, batch.task_name, batch.bucket, batch.shard)
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

-- name: retention_count_error_history --
SELECT count(*) AS count
  FROM pgjobs.job_errors
 WHERE failed_at < coalesce(%(now)s::timestamptz, now()) - %(older_than)s::interval;

-- name: retention_delete_error_history --
WITH batch AS (
    SELECT id
      FROM pgjobs.job_errors
     WHERE failed_at < coalesce(%(now)s::timestamptz, now()) - %(older_than)s::interval
     ORDER BY id
     LIMIT %(batch_size)s
       FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM pgjobs.job_errors AS error
     USING batch
     WHERE error.id = batch.id
    RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;
