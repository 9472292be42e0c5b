-- Stalled jobs: running jobs whose worker is gone or silent.

-- name: stalled_jobs --
-- Running jobs whose worker is gone or has not sent a heartbeat lately.
SELECT job.id, job.status::text AS status, job.task_name, job.priority, job.lock,
       job.queueing_lock, job.args, job.scheduled_at, job.queue_name,
       job.attempts, job.worker_id
  FROM procrastinate_jobs AS job
  LEFT JOIN procrastinate_workers AS worker ON worker.id = job.worker_id
 WHERE job.status = 'doing'
   AND (worker.id IS NULL
        OR worker.last_heartbeat < now() - %(stalled_after)s::interval)
 ORDER BY job.id
 LIMIT %(limit)s;
