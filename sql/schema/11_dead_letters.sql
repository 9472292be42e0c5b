-- Jobs that failed for good, copied with their last error. No foreign key
-- to procrastinate_jobs: pruning jobs never loses letters.
CREATE TABLE pgjobs.dead_letters (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL,
    task_name text NOT NULL,
    queue_name text NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    lock text,
    args jsonb NOT NULL DEFAULT '{}',
    attempts integer NOT NULL,
    error_type text NOT NULL,
    error_message text NOT NULL DEFAULT '',
    traceback text,
    first_failed_at timestamptz NOT NULL,
    last_failed_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz,
    replay_job_id bigint
);
CREATE INDEX dead_letters_job_id_idx ON pgjobs.dead_letters (job_id);
CREATE INDEX dead_letters_created_at_idx ON pgjobs.dead_letters (created_at);
CREATE INDEX dead_letters_pending_idx ON pgjobs.dead_letters (task_name, queue_name)
    WHERE replayed_at IS NULL;

-- A job becoming 'failed' (by any path: pgjobs' worker, procrastinate's own
-- functions, stalled-job rescue) gets its dead letter in the same statement.
CREATE FUNCTION pgjobs.dead_letter_failed_job()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO pgjobs.dead_letters
           (job_id, task_name, queue_name, priority, lock, args, attempts,
            error_type, error_message, traceback, first_failed_at, last_failed_at)
    SELECT NEW.id, NEW.task_name, NEW.queue_name, NEW.priority, NEW.lock,
           NEW.args, NEW.attempts,
           coalesce(last_error.error_type, 'Unknown'),
           coalesce(last_error.error_message, ''),
           last_error.traceback,
           coalesce(history.first_failed_at, now()),
           coalesce(last_error.failed_at, now())
      FROM (SELECT min(failed_at) AS first_failed_at
              FROM pgjobs.job_errors WHERE job_id = NEW.id) AS history
      LEFT JOIN LATERAL (
           SELECT error_type, error_message, traceback, failed_at
             FROM pgjobs.job_errors
            WHERE job_id = NEW.id
            ORDER BY id DESC
            LIMIT 1) AS last_error ON true;
    RETURN NULL;
END;
$$;

CREATE TRIGGER pgjobs_dead_letter_failed_job
    AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW
    WHEN (NEW.status = 'failed' AND OLD.status <> 'failed')
    EXECUTE FUNCTION pgjobs.dead_letter_failed_job();
