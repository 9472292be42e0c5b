-- Failed attempts: the error row, the retry decision and the dead letter in
-- one statement (sql/schema: job_attempts).

-- name: retries_fail_job_attempt --
-- Record a failed attempt; retry at retry_at, or fail for good (dead letter)
-- when retry_at is NULL.
SELECT applied, status, dead_letter_id
  FROM pgjobs.fail_job_attempt(
       %(job_id)s, %(error_type)s, %(error_message)s, %(traceback)s,
       %(retry_at)s, %(priority)s, %(queue)s, %(lock)s, %(delete_job)s,
       %(stalled_after)s);
