-- Circuit breakers (sql/schema: breakers): acquire and record per call, the
-- admin's list and reset, and the job put back while a breaker is open.

-- name: breakers_reschedule_job --
-- Back to the queue without counting an attempt (open circuit breaker).
SELECT pgjobs.reschedule_job(%(job_id)s, %(run_at)s) AS status;

-- name: breakers_acquire --
SELECT allowed, state, retry_at
  FROM pgjobs.breaker_acquire(%(breaker)s, %(failure_threshold)s,
                              %(recovery_window)s, %(success_threshold)s);

-- name: breakers_record --
SELECT state, changed
  FROM pgjobs.breaker_record(%(breaker)s, %(success)s, %(failure_threshold)s,
                             %(recovery_window)s, %(success_threshold)s,
                             %(error)s);

-- name: breakers_list --
SELECT * FROM pgjobs.breakers ORDER BY name;

-- name: breakers_get --
SELECT * FROM pgjobs.breakers WHERE name = %(breaker)s;

-- name: breakers_reset --
UPDATE pgjobs.breakers
   SET state = 'closed', failure_count = 0, success_count = 0, trial_count = 0,
       opened_at = NULL, reopens_at = NULL, updated_at = now()
 WHERE name = %(breaker)s
RETURNING *;
