-- Jobs: one job's state, errors and admin actions (get, list, cancel, retry), and
-- state counts for the demo.

-- name: jobs_status_counts --
-- How many of the given jobs are in each state.
SELECT status::text AS status, count(*) AS jobs
  FROM procrastinate_jobs
 WHERE id = ANY(%(ids)s)
 GROUP BY status
 ORDER BY status;

-- name: jobs_errors --
-- The failed attempts and interruptions of one job, oldest first.
SELECT id, job_id, task_name, queue_name, attempt, error_type, error_message,
       traceback, worker_id, failed_at, kind
  FROM pgjobs.job_errors
 WHERE job_id = %(job_id)s
 ORDER BY id;

-- name: jobs_get --
-- One job with its timestamps (from procrastinate_events) and progress.
SELECT job.id, job.queue_name, job.task_name, job.priority, job.lock,
       job.queueing_lock, job.args, job.status::text AS status,
       job.scheduled_at, job.attempts, job.abort_requested, job.worker_id,
       events.created_at, events.started_at,
       CASE WHEN job.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
            THEN events.finished_at END AS finished_at,
       progress.progress, progress.message AS progress_message,
       progress.updated_at AS progress_updated_at,
       deadline.expires_at, deadline.expired_at,
       paused.paused_at AS queue_paused_at, paused.paused_by AS queue_paused_by,
       pgjobs.job_limit_reasons(job.id) AS limit_reasons
  FROM procrastinate_jobs AS job
  LEFT JOIN LATERAL (
       SELECT min(at) FILTER (WHERE type = 'deferred') AS created_at,
              max(at) FILTER (WHERE type = 'started') AS started_at,
              max(at) FILTER (WHERE type IN ('succeeded', 'failed', 'cancelled',
                                             'aborted')) AS finished_at
         FROM procrastinate_events
        WHERE job_id = job.id) AS events ON true
  LEFT JOIN pgjobs.job_progress AS progress ON progress.job_id = job.id
  LEFT JOIN pgjobs.job_deadlines AS deadline ON deadline.job_id = job.id
  LEFT JOIN pgjobs.paused_queues AS paused ON paused.queue_name = job.queue_name
 WHERE job.id = %(job_id)s;

-- name: jobs_list --
-- Newest jobs first, with their last error. A job's age counts from its
-- 'deferred' event (when it was enqueued).
SELECT job.id, job.queue_name, job.task_name, job.status::text AS status,
       job.priority, job.attempts, job.scheduled_at, enqueued.at AS enqueued_at,
       progress.progress, last_error.error_type AS last_error_type,
       last_error.error_message AS last_error_message,
       deadline.expired_at
  FROM procrastinate_jobs AS job
  LEFT JOIN pgjobs.job_progress AS progress ON progress.job_id = job.id
  LEFT JOIN pgjobs.job_deadlines AS deadline ON deadline.job_id = job.id
  LEFT JOIN LATERAL (
       SELECT min(event.at) AS at FROM procrastinate_events AS event
        WHERE event.job_id = job.id AND event.type = 'deferred') AS enqueued ON true
  LEFT JOIN LATERAL (
       SELECT error_type, error_message FROM pgjobs.job_errors
        WHERE job_id = job.id ORDER BY id DESC LIMIT 1) AS last_error ON true
 WHERE (%(queue)s::text IS NULL OR job.queue_name = %(queue)s)
   AND (%(task)s::text IS NULL OR job.task_name = %(task)s)
   AND (%(status)s::procrastinate_job_status IS NULL OR job.status = %(status)s)
   AND (%(older_than)s::interval IS NULL
        OR enqueued.at < now() - %(older_than)s::interval)
   AND (%(newer_than)s::interval IS NULL
        OR enqueued.at >= now() - %(newer_than)s::interval)
 ORDER BY job.id DESC
 LIMIT %(limit)s;

-- name: jobs_cancel --
-- Cancel a waiting job, or (abort) request the abort of a running one.
SELECT job.status::text AS status_before,
       procrastinate_cancel_job_v1(job.id, %(abort)s, false) AS job_id
  FROM procrastinate_jobs AS job
 WHERE job.id = %(job_id)s;

-- name: jobs_state --
SELECT status::text AS status, abort_requested
  FROM procrastinate_jobs WHERE id = %(job_id)s;

-- name: jobs_retry_failed --
SELECT pgjobs.retry_failed_job(%(job_id)s) AS job_id;
