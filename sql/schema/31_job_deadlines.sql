-- Start-by deadlines (enqueue option expires_at / expires_in): a job not
-- started by expires_at never starts; a retry due after it does not start
-- either. The claim skips such a job and it ends 'cancelled' with
-- expired_at set here (pgjobs.expire_jobs). A side table, as
-- pgjobs.job_traces: procrastinate's rows stay as they are; gone with its job.
CREATE TABLE pgjobs.job_deadlines (
    job_id bigint PRIMARY KEY REFERENCES procrastinate_jobs (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    expired_at timestamptz
);
-- Deadlines not yet acted on, by time (the claim's "anything due?" probe
-- and the sweep).
CREATE INDEX job_deadlines_due_idx ON pgjobs.job_deadlines (expires_at)
    WHERE expired_at IS NULL;
-- Expirations in the stats window (queue_stats, task_stats).
CREATE INDEX job_deadlines_expired_at_idx ON pgjobs.job_deadlines (expired_at)
    WHERE expired_at IS NOT NULL;

-- SECURITY DEFINER: callable by the enqueuer role, which has no grant on
-- the table itself (as pgjobs.store_job_traces).
CREATE FUNCTION pgjobs.store_job_deadlines(p_ids bigint[], p_expires_at timestamptz)
    RETURNS void
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pgjobs, public
AS $$
    INSERT INTO pgjobs.job_deadlines (job_id, expires_at)
    SELECT id, p_expires_at
      FROM unnest(p_ids) AS id
     WHERE id IS NOT NULL
    ON CONFLICT (job_id) DO UPDATE SET expires_at = excluded.expires_at;
$$;

-- End up to p_limit waiting jobs whose deadline has passed: 'cancelled'
-- (procrastinate's trigger writes the 'cancelled' event; not a failure, no
-- dead letter), expired_at set. Deadlines of jobs that ended otherwise are
-- dropped; those of running jobs stay (a retry after the deadline expires).
-- Jobs another transaction holds (a claim) are skipped. Returns the ids
-- expired. Called by every claim that finds a deadline due, and by the
-- workers' sweep (pgjobs.expiry) for queues no worker claims from.
-- Counted in pgjobs.task_rollups (task_stats.expired).
CREATE FUNCTION pgjobs.expire_jobs(p_limit integer DEFAULT 1000)
    RETURNS SETOF bigint
    LANGUAGE plpgsql
    SET jit = off
AS $$
BEGIN
    DELETE FROM pgjobs.job_deadlines AS deadline
     USING procrastinate_jobs AS job
     WHERE deadline.job_id = job.id
       AND deadline.expired_at IS NULL
       AND deadline.expires_at <= now()
       AND job.status IN ('succeeded', 'failed', 'cancelled', 'aborted');
    RETURN QUERY
    WITH due AS (
        SELECT job.id
          FROM pgjobs.job_deadlines AS deadline
          JOIN procrastinate_jobs AS job ON job.id = deadline.job_id
         WHERE deadline.expired_at IS NULL
           AND deadline.expires_at <= now()
           AND job.status = 'todo'
         ORDER BY deadline.expires_at
         LIMIT greatest(p_limit, 0)
           FOR UPDATE OF job SKIP LOCKED
    ), expired AS (
        UPDATE procrastinate_jobs AS job
           SET status = 'cancelled'
          FROM due
         WHERE job.id = due.id
        RETURNING job.id, job.task_name
    ), marked AS (
        UPDATE pgjobs.job_deadlines AS deadline
           SET expired_at = now()
          FROM expired
         WHERE deadline.job_id = expired.id
    ), rolled AS (
        INSERT INTO pgjobs.task_rollups AS rollup
               (minute, task_name, bucket, shard, expired)
        SELECT date_trunc('minute', now()), expired.task_name, -3, pg_backend_pid() % 4,
               count(*)
          FROM expired
         GROUP BY expired.task_name
         ORDER BY expired.task_name
        ON CONFLICT (minute, task_name, bucket, shard) DO UPDATE
           SET expired = rollup.expired + excluded.expired
    )
    SELECT expired.id FROM expired ORDER BY expired.id;
END;
$$;
