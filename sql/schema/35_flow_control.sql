-- Flow control (README: Flow control): paused queues and start-by deadlines.
-- The claim (pgjobs.fetch_jobs) reads both; so does the start of a
-- prefetched job (pgjobs.finish_jobs).

-- A queue listed here still takes enqueues, but no worker starts its jobs;
-- jobs already running finish. Every claim reads this table, so a pause or a
-- resume is seen by running workers at their next claim (a resume wakes the
-- idle ones: pgjobs.resume_queue).
CREATE TABLE pgjobs.paused_queues (
    queue_name text PRIMARY KEY
        CHECK (char_length(queue_name) BETWEEN 1 AND 128),
    paused_at timestamptz NOT NULL DEFAULT now(),
    paused_by text NOT NULL DEFAULT session_user
);

-- procrastinate_jobs.queue_name is varchar(128); text has no NUL.
CREATE FUNCTION pgjobs.check_queue_name(p_queue_name text)
    RETURNS void
    LANGUAGE plpgsql
    IMMUTABLE
AS $$
BEGIN
    IF p_queue_name IS NULL OR char_length(p_queue_name) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'queue name must be 1 to 128 characters, got %',
            coalesce(quote_literal(left(p_queue_name, 60)), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$$;

-- Pause a queue; false when it was paused already (its row is kept as is).
CREATE FUNCTION pgjobs.pause_queue(p_queue_name text, p_paused_by text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pgjobs.check_queue_name(p_queue_name);
    INSERT INTO pgjobs.paused_queues (queue_name, paused_by)
    VALUES (p_queue_name, coalesce(p_paused_by, session_user))
    ON CONFLICT (queue_name) DO NOTHING;
    RETURN FOUND;
END;
$$;

-- Resume a queue; false when it was not paused. At commit, the workers
-- listening for the queue (or for every queue) are woken as by an enqueue,
-- so its jobs start at once, not at the next poll.
CREATE FUNCTION pgjobs.resume_queue(p_queue_name text)
    RETURNS boolean
    LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM pgjobs.paused_queues WHERE queue_name = p_queue_name;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- Channel names stop at 63 bytes (see pgjobs.notify_jobs_inserted).
    IF octet_length('procrastinate_queue_v1#' || p_queue_name) <= 63 THEN
        PERFORM pg_notify('procrastinate_queue_v1#' || p_queue_name,
                          json_build_object('type', 'job_inserted',
                                            'job_id', NULL)::text);
    END IF;
    PERFORM pg_notify('procrastinate_any_queue_v1',
                      json_build_object('type', 'job_inserted', 'job_id', NULL)::text);
    RETURN true;
END;
$$;

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
        RETURNING job.id
    ), marked AS (
        UPDATE pgjobs.job_deadlines AS deadline
           SET expired_at = now()
          FROM expired
         WHERE deadline.job_id = expired.id
    )
    SELECT expired.id FROM expired ORDER BY expired.id;
END;
$$;
