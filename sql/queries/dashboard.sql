-- The dashboard's own reads and its audit trail (pgjobs.dashboard). Every
-- statement is bounded (LIMIT, keyset pagination on id) and runs under the
-- dashboard connection's statement_timeout.

-- name: dashboard_set_statement_timeout --
-- Local to the request's transaction: a session setting would stay on the
-- server connection behind a transaction pooler (PgBouncer) and bound
-- other clients' statements.
SELECT set_config('statement_timeout', %(timeout)s, true) AS value;

-- name: dashboard_access --
-- What the dashboard's role may do: without UPDATE on the jobs it is
-- read-only (pgjobs_monitor); without SELECT it shows the views only.
SELECT current_user::text AS role,
       has_table_privilege('procrastinate_jobs', 'UPDATE') AS can_write,
       has_table_privilege('procrastinate_jobs', 'SELECT') AS can_read_jobs;

-- name: dashboard_throughput --
-- Finished attempts per minute over the last hour, one row per minute.
SELECT minute.at AS minute,
       coalesce(counts.succeeded, 0) AS succeeded,
       coalesce(counts.failed, 0) AS failed
  FROM generate_series(date_trunc('minute', now()) - interval '59 minutes',
                       date_trunc('minute', now()), interval '1 minute') AS minute(at)
  LEFT JOIN (
       SELECT date_trunc('minute', event.at) AS at,
              count(*) FILTER (WHERE event.type = 'succeeded') AS succeeded,
              count(*) FILTER (WHERE event.type <> 'succeeded') AS failed
         FROM procrastinate_events AS event
        WHERE event.type IN ('succeeded', 'failed', 'deferred_for_retry')
          AND event.at >= date_trunc('minute', now()) - interval '59 minutes'
        GROUP BY 1
  ) AS counts USING (at)
 ORDER BY minute.at;

-- name: dashboard_jobs --
-- One page of jobs, newest first, after the keyset id (before).
SELECT job.id, job.queue_name::text AS queue_name, job.task_name::text AS task_name,
       job.status::text AS status, job.priority, job.attempts, job.scheduled_at,
       job.abort_requested, progress.progress,
       last_error.error_type AS last_error_type,
       last_error.error_message AS last_error_message
  FROM procrastinate_jobs AS job
  LEFT JOIN pgjobs.job_progress AS progress ON progress.job_id = job.id
  LEFT JOIN LATERAL (
       SELECT error_type, error_message FROM pgjobs.job_errors
        WHERE job_id = job.id ORDER BY id DESC LIMIT 1) AS last_error ON true
 WHERE (%(status)s::procrastinate_job_status IS NULL OR job.status = %(status)s)
   AND (%(queue)s::text IS NULL OR job.queue_name = %(queue)s)
   AND (%(task)s::text IS NULL OR job.task_name = %(task)s)
   AND (%(before)s::bigint IS NULL OR job.id < %(before)s)
 ORDER BY job.id DESC
 LIMIT %(limit)s;

-- name: dashboard_jobs_count --
-- How many jobs match, counted up to a bound (the page says "N+" beyond).
SELECT count(*) AS count FROM (
    SELECT 1 FROM procrastinate_jobs AS job
     WHERE (%(status)s::procrastinate_job_status IS NULL OR job.status = %(status)s)
       AND (%(queue)s::text IS NULL OR job.queue_name = %(queue)s)
       AND (%(task)s::text IS NULL OR job.task_name = %(task)s)
     LIMIT %(bound)s
) AS matching;

-- name: dashboard_job_ids --
-- The ids a bulk action applies to (oldest first), at most limit.
SELECT job.id
  FROM procrastinate_jobs AS job
 WHERE job.status = %(status)s::procrastinate_job_status
   AND (%(queue)s::text IS NULL OR job.queue_name = %(queue)s)
   AND (%(task)s::text IS NULL OR job.task_name = %(task)s)
 ORDER BY job.id
 LIMIT %(limit)s;

-- name: dashboard_job_events --
SELECT event.id, event.type::text AS type, event.at
  FROM procrastinate_events AS event
 WHERE event.job_id = %(job_id)s
 ORDER BY event.id
 LIMIT 500;

-- name: dashboard_job_dead_letters --
SELECT letter.id, letter.created_at, letter.replayed_at, letter.replay_job_id
  FROM pgjobs.dead_letters AS letter
 WHERE letter.job_id = %(job_id)s
 ORDER BY letter.id;

-- name: dashboard_dead_letter_groups --
-- Pending letters by task and error type (index dead_letters_pending_idx).
SELECT letter.task_name, letter.error_type, count(*) AS pending,
       min(letter.last_failed_at) AS first_failed_at,
       max(letter.last_failed_at) AS last_failed_at
  FROM pgjobs.dead_letters AS letter
 WHERE letter.replayed_at IS NULL
 GROUP BY letter.task_name, letter.error_type
 ORDER BY pending DESC, letter.task_name, letter.error_type
 LIMIT 200;

-- name: dashboard_dead_letters --
-- One page of letters, newest first; pending only unless all.
SELECT letter.id, letter.job_id, letter.task_name, letter.queue_name,
       letter.attempts, letter.error_type, letter.error_message,
       letter.last_failed_at, letter.replayed_at, letter.replay_job_id
  FROM pgjobs.dead_letters AS letter
 WHERE (%(all)s OR letter.replayed_at IS NULL)
   AND (%(task)s::text IS NULL OR letter.task_name = %(task)s)
   AND (%(error_type)s::text IS NULL OR letter.error_type = %(error_type)s)
   AND (%(before)s::bigint IS NULL OR letter.id < %(before)s)
 ORDER BY letter.id DESC
 LIMIT %(limit)s;

-- name: dashboard_audit_insert --
INSERT INTO pgjobs.audit_log (actor, action, target, job_ids, detail)
VALUES (%(actor)s, %(action)s, %(target)s, %(job_ids)s, %(detail)s)
RETURNING id;

-- name: dashboard_audit_list --
SELECT entry.id, entry.at, entry.actor, entry.action, entry.target,
       entry.job_ids, entry.detail
  FROM pgjobs.audit_log AS entry
 WHERE (%(before)s::bigint IS NULL OR entry.id < %(before)s)
 ORDER BY entry.id DESC
 LIMIT %(limit)s;

-- name: dashboard_audit_get --
SELECT entry.id, entry.at, entry.actor, entry.action, entry.target,
       entry.job_ids, entry.detail
  FROM pgjobs.audit_log AS entry
 WHERE entry.id = %(id)s;
