-- Progress (0-100) a running task reports; goes away with its job.
CREATE TABLE pgjobs.job_progress (
    job_id bigint PRIMARY KEY REFERENCES procrastinate_jobs (id) ON DELETE CASCADE,
    progress smallint NOT NULL CHECK (progress BETWEEN 0 AND 100),
    message text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
