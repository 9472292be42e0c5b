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
