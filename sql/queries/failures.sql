-- Failure handling: error history, job status, dead letters, breakers,
-- stalled jobs. Objects are defined in sql/schema/20_failures.sql.

-- name: failures_fail_job_attempt --
-- Record a failed attempt; retry at retry_at, or fail for good (dead letter)
-- when retry_at is NULL.
SELECT applied, status, dead_letter_id
  FROM pgjobs.fail_job_attempt(
       %(job_id)s, %(error_type)s, %(error_message)s, %(traceback)s,
       %(retry_at)s, %(priority)s, %(queue)s, %(lock)s, %(delete_job)s,
       %(stalled_after)s);

-- name: failures_reschedule_job --
-- Back to the queue without counting an attempt (open circuit breaker).
SELECT pgjobs.reschedule_job(%(job_id)s, %(run_at)s) AS status;

-- name: failures_stalled_jobs --
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

-- name: failures_job_errors --
-- The failed attempts and interruptions of one job, oldest first.
SELECT id, job_id, task_name, queue_name, attempt, error_type, error_message,
       traceback, worker_id, failed_at, kind
  FROM pgjobs.job_errors
 WHERE job_id = %(job_id)s
 ORDER BY id;

-- name: failures_get_job --
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

-- name: failures_list_jobs --
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

-- name: failures_cancel_job --
-- Cancel a waiting job, or (abort) request the abort of a running one.
SELECT job.status::text AS status_before,
       procrastinate_cancel_job_v1(job.id, %(abort)s, false) AS job_id
  FROM procrastinate_jobs AS job
 WHERE job.id = %(job_id)s;

-- name: failures_job_state --
SELECT status::text AS status, abort_requested
  FROM procrastinate_jobs WHERE id = %(job_id)s;

-- name: failures_retry_failed_job --
SELECT pgjobs.retry_failed_job(%(job_id)s) AS job_id;

-- name: failures_set_progress --
INSERT INTO pgjobs.job_progress (job_id, progress, message)
VALUES (%(job_id)s, %(progress)s, %(message)s)
ON CONFLICT (job_id) DO UPDATE
   SET progress = EXCLUDED.progress, message = EXCLUDED.message,
       updated_at = now();

-- name: failures_get_dead_letter --
SELECT * FROM pgjobs.dead_letters WHERE id = %(id)s;

-- name: failures_list_dead_letters --
SELECT * FROM pgjobs.dead_letters
 WHERE (%(task)s::text IS NULL OR task_name = %(task)s)
   AND (%(queue)s::text IS NULL OR queue_name = %(queue)s)
   AND (%(error_type)s::text IS NULL OR error_type = %(error_type)s)
   AND (%(since)s::timestamptz IS NULL OR last_failed_at >= %(since)s)
   AND (%(until)s::timestamptz IS NULL OR last_failed_at < %(until)s)
   AND (%(replayed)s::boolean IS NULL
        OR (replayed_at IS NOT NULL) = %(replayed)s)
 ORDER BY id DESC
 LIMIT %(limit)s;

-- name: failures_replay_dead_letters --
-- Enqueue one new job per matching letter not yet replayed (through
-- pgjobs.defer_jobs) and mark the letters, in one statement. Letters another
-- replay holds are skipped, so a letter is never replayed twice.
WITH locked AS (
    SELECT id, queue_name, task_name, priority, lock, args
      FROM pgjobs.dead_letters
     WHERE replayed_at IS NULL
       AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s))
       AND (%(task)s::text IS NULL OR task_name = %(task)s)
       AND (%(queue)s::text IS NULL OR queue_name = %(queue)s)
       AND (%(error_type)s::text IS NULL OR error_type = %(error_type)s)
       AND (%(since)s::timestamptz IS NULL OR last_failed_at >= %(since)s)
       AND (%(until)s::timestamptz IS NULL OR last_failed_at < %(until)s)
     ORDER BY id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
), picked AS MATERIALIZED (
    SELECT locked.*, row_number() OVER (ORDER BY id) AS ord FROM locked
), deferred AS MATERIALIZED (
    SELECT pgjobs.defer_jobs(
               array_agg(ROW(queue_name, task_name, priority, lock, NULL, args,
                             NULL)::procrastinate_job_to_defer_v1
                         ORDER BY ord)) AS ids
      FROM picked
), mapped AS (
    SELECT picked.id, new_job.job_id
      FROM picked
      JOIN deferred ON true
      JOIN LATERAL unnest(deferred.ids) WITH ORDINALITY AS new_job(job_id, ord)
        ON new_job.ord = picked.ord
)
UPDATE pgjobs.dead_letters AS letter
   SET replayed_at = now(), replay_job_id = mapped.job_id
  FROM mapped
 WHERE letter.id = mapped.id
RETURNING letter.id AS letter_id, letter.replay_job_id AS job_id,
          letter.task_name, letter.queue_name;

-- name: failures_purge_dead_letters --
DELETE FROM pgjobs.dead_letters
 WHERE created_at < now() - %(older_than)s::interval
   AND (NOT %(replayed_only)s OR replayed_at IS NOT NULL)
RETURNING id;

-- name: failures_breaker_acquire --
SELECT allowed, state, retry_at
  FROM pgjobs.breaker_acquire(%(breaker)s, %(failure_threshold)s,
                              %(recovery_window)s, %(success_threshold)s);

-- name: failures_breaker_record --
SELECT state, changed
  FROM pgjobs.breaker_record(%(breaker)s, %(success)s, %(failure_threshold)s,
                             %(recovery_window)s, %(success_threshold)s,
                             %(error)s);

-- name: failures_list_breakers --
SELECT * FROM pgjobs.breakers ORDER BY name;

-- name: failures_get_breaker --
SELECT * FROM pgjobs.breakers WHERE name = %(breaker)s;

-- name: failures_reset_breaker --
UPDATE pgjobs.breakers
   SET state = 'closed', failure_count = 0, success_count = 0, trial_count = 0,
       opened_at = NULL, reopens_at = NULL, updated_at = now()
 WHERE name = %(breaker)s
RETURNING *;
