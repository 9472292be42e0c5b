-- One row per queue that has waiting, scheduled or running jobs, jobs that
-- finished or expired in the window, or pending dead letters, and per
-- paused queue. paused: no worker starts its jobs (pgjobs.paused_queues);
-- expired: jobs that ended unstarted at their start-by deadline in the
-- window (pgjobs.job_deadlines).
CREATE VIEW pgjobs.queue_stats AS
WITH active AS (
    SELECT job.queue_name,
           count(*) FILTER (WHERE job.status = 'todo'
                              AND (job.scheduled_at IS NULL OR job.scheduled_at <= (SELECT pgjobs.as_of())))
               AS waiting,
           count(*) FILTER (WHERE job.status = 'todo' AND job.scheduled_at > (SELECT pgjobs.as_of()))
               AS scheduled,
           count(*) FILTER (WHERE job.status = 'doing') AS running
      FROM procrastinate_jobs AS job
     WHERE job.status IN ('todo', 'doing')
     GROUP BY job.queue_name
), latency AS (
    -- A waiting job has been ready since its run-at time or its last
    -- (re)queueing, whichever is later.
    SELECT job.queue_name,
           max((SELECT pgjobs.as_of()) - greatest(job.scheduled_at, queued.at)) AS oldest_waiting
      FROM procrastinate_jobs AS job
      CROSS JOIN LATERAL (
           SELECT max(event.at) AS at
             FROM procrastinate_events AS event
            WHERE event.job_id = job.id
              AND event.type IN ('deferred', 'deferred_for_retry', 'retried')
      ) AS queued
     WHERE job.status = 'todo'
       AND (job.scheduled_at IS NULL OR job.scheduled_at <= (SELECT pgjobs.as_of()))
     GROUP BY job.queue_name
), finished AS (
    -- Logged ends, and successes kept in their job row (finished_at,
    -- sql/schema/05_job_events.sql).
    SELECT ended.queue_name,
           count(*) FILTER (WHERE ended.type = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE ended.type = 'failed') AS failed
      FROM (SELECT job.queue_name, event.type
              FROM pgjobs.event_log AS event
              JOIN procrastinate_jobs AS job ON job.id = event.job_id
             WHERE event.type IN ('succeeded', 'failed')
               -- as_of() called, not sub-selected: the planner folds it to
               -- estimate the window's rows (an InitPlan is a blind 1/3: a
               -- hash join over every job instead of the (type, at) index).
               AND event.at >= pgjobs.as_of()
                   - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval
            UNION ALL
            SELECT job.queue_name, 'succeeded'::procrastinate_job_event_type
              FROM procrastinate_jobs AS job
             WHERE job.finished_at >= pgjobs.as_of()
                   - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval) AS ended
     GROUP BY ended.queue_name
), letters AS (
    SELECT letter.queue_name, count(*) AS dead_letters
      FROM pgjobs.dead_letters AS letter
     WHERE letter.replayed_at IS NULL
     GROUP BY letter.queue_name
), expirations AS (
    SELECT job.queue_name::text AS queue_name, count(*) AS expired
      FROM pgjobs.job_deadlines AS deadline
      JOIN procrastinate_jobs AS job ON job.id = deadline.job_id
     WHERE deadline.expired_at
           >= pgjobs.as_of() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval
     GROUP BY job.queue_name
), paused AS (
    SELECT paused.queue_name, true AS paused FROM pgjobs.paused_queues AS paused
)
SELECT queue_name::text AS queue_name,
       coalesce(active.waiting, 0) AS waiting,
       coalesce(active.scheduled, 0) AS scheduled,
       coalesce(active.running, 0) AS running,
       coalesce(finished.succeeded, 0) AS succeeded,
       coalesce(finished.failed, 0) AS failed,
       coalesce(letters.dead_letters, 0) AS dead_letters,
       coalesce(extract(epoch FROM latency.oldest_waiting)::double precision, 0)
           AS oldest_waiting_s,
       coalesce(paused.paused, false) AS paused,
       coalesce(expirations.expired, 0) AS expired
  FROM active
  FULL JOIN latency USING (queue_name)
  FULL JOIN finished USING (queue_name)
  FULL JOIN letters USING (queue_name)
  FULL JOIN expirations USING (queue_name)
  FULL JOIN paused USING (queue_name);
