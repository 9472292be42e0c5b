-- One row per failed attempt (worker errors, timeouts, lost workers) and per
-- interruption by a worker shutdown.
-- No foreign key: pruning jobs must not erase their history.
CREATE TABLE pgjobs.job_errors (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL,
    task_name text NOT NULL,
    queue_name text NOT NULL,
    attempt integer NOT NULL,
    error_type text NOT NULL,
    error_message text NOT NULL DEFAULT '',
    traceback text,
    worker_id bigint,
    failed_at timestamptz NOT NULL DEFAULT now(),
    -- 'error': a failed attempt (it counted); 'interruption': the job was
    -- still running when its worker's shutdown grace ended and went back to
    -- the queue without counting an attempt (pgjobs.interrupt_job).
    kind text NOT NULL DEFAULT 'error' CHECK (kind IN ('error', 'interruption'))
);
CREATE INDEX job_errors_job_id_idx ON pgjobs.job_errors (job_id, id);
CREATE INDEX job_errors_failed_at_idx ON pgjobs.job_errors (failed_at);
-- Interruptions by worker shutdowns (pgjobs.interrupt_job counts them per
-- job; pgjobs.health_interrupted_jobs reports the jobs that outlive the grace).
CREATE INDEX job_errors_interruptions_idx ON pgjobs.job_errors (job_id)
    WHERE error_type = 'WorkerShutdown';
