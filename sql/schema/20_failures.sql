-- Failure handling: error history, dead letters, circuit breakers, progress.
-- Successful jobs never touch these objects: the dead-letter trigger only
-- fires when a job becomes 'failed'.

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

-- Progress (0-100) a running task reports; goes away with its job.
CREATE TABLE pgjobs.job_progress (
    job_id bigint PRIMARY KEY REFERENCES procrastinate_jobs (id) ON DELETE CASCADE,
    progress smallint NOT NULL CHECK (progress BETWEEN 0 AND 100),
    message text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Circuit breakers shared by every worker. The row is the state; every
-- transition happens under the row lock inside the functions below.
CREATE TABLE pgjobs.breakers (
    name text PRIMARY KEY,
    state text NOT NULL DEFAULT 'closed'
        CHECK (state IN ('closed', 'open', 'half_open')),
    failure_threshold integer NOT NULL CHECK (failure_threshold > 0),
    recovery_window interval NOT NULL,
    success_threshold integer NOT NULL CHECK (success_threshold > 0),
    failure_count integer NOT NULL DEFAULT 0,
    success_count integer NOT NULL DEFAULT 0,
    trial_count integer NOT NULL DEFAULT 0,
    opened_at timestamptz,
    reopens_at timestamptz,
    last_failure_at timestamptz,
    last_error text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

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

-- Record a failed attempt and move the job on, in one transaction: retried
-- at p_retry_at, or failed for good when p_retry_at is NULL (the trigger then
-- writes the dead letter). With p_stalled_after, only a job still 'doing' on
-- a worker without a recent heartbeat is touched, and a job another rescuer
-- holds is skipped: applied is false then. A job of such a worker that never
-- started (prefetched: no 'started' event since it was last queued, see
-- pgjobs.fetch_jobs) goes back to the queue with no attempt counted and no
-- error recorded: status 'released'. Failing a job for good (p_retry_at NULL)
-- also takes a 'todo' job, as procrastinate's finish_job does: it never ran,
-- so no error row is written.
CREATE FUNCTION pgjobs.fail_job_attempt(
    p_job_id bigint,
    p_error_type text,
    p_error_message text,
    p_traceback text,
    p_retry_at timestamptz,
    p_new_priority integer,
    p_new_queue_name character varying,
    p_new_lock character varying,
    p_delete_job boolean,
    p_stalled_after interval
)
    RETURNS TABLE (applied boolean, status text, dead_letter_id bigint)
    LANGUAGE plpgsql
AS $$
DECLARE
    _job procrastinate_jobs;
    _status procrastinate_job_status;
    _letter_id bigint;
    _queued bigint;
BEGIN
    IF p_stalled_after IS NULL THEN
        SELECT * INTO _job FROM procrastinate_jobs
         WHERE id = p_job_id
           AND (procrastinate_jobs.status = 'doing'
                OR (p_retry_at IS NULL AND procrastinate_jobs.status = 'todo'))
           FOR UPDATE;
        IF NOT FOUND AND p_retry_at IS NULL THEN
            RAISE 'Job was not found or not in "doing" or "todo" status (job id: %)',
                p_job_id;
        ELSIF NOT FOUND THEN
            RAISE 'Job was not found or not in "doing" status (job id: %)', p_job_id;
        END IF;
    ELSE
        SELECT * INTO _job FROM procrastinate_jobs AS job
         WHERE job.id = p_job_id AND job.status = 'doing'
           AND NOT EXISTS (
               SELECT 1 FROM procrastinate_workers AS worker
                WHERE worker.id = job.worker_id
                  AND worker.last_heartbeat >= now() - p_stalled_after)
           FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN QUERY SELECT false, NULL::text, NULL::bigint;
            RETURN;
        END IF;
        SELECT max(queued.id) INTO _queued
          FROM procrastinate_events AS queued
         WHERE queued.job_id = p_job_id
           AND queued.type IN ('deferred', 'deferred_for_retry', 'retried');
        IF _queued IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM procrastinate_events AS started
                WHERE started.job_id = p_job_id
                  AND started.type = 'started'
                  AND started.id > _queued) THEN
            UPDATE procrastinate_jobs SET status = 'todo', worker_id = NULL
             WHERE id = p_job_id;
            RETURN QUERY SELECT true, 'released'::text, NULL::bigint;
            RETURN;
        END IF;
    END IF;

    IF _job.status = 'doing' THEN
        INSERT INTO pgjobs.job_errors
               (job_id, task_name, queue_name, attempt, error_type, error_message,
                traceback, worker_id)
        VALUES (_job.id, _job.task_name, _job.queue_name, _job.attempts + 1,
                p_error_type, coalesce(p_error_message, ''), p_traceback,
                _job.worker_id);
    END IF;

    IF p_retry_at IS NOT NULL THEN
        PERFORM procrastinate_retry_job_v2(
            p_job_id, p_retry_at, p_new_priority, p_new_queue_name, p_new_lock);
    ELSE
        PERFORM procrastinate_finish_job_v1(p_job_id, 'failed', false);
    END IF;

    SELECT job.status INTO _status FROM procrastinate_jobs AS job
     WHERE job.id = p_job_id;
    IF _status = 'failed' THEN
        SELECT letter.id INTO _letter_id FROM pgjobs.dead_letters AS letter
         WHERE letter.job_id = p_job_id ORDER BY letter.id DESC LIMIT 1;
        IF p_delete_job THEN
            DELETE FROM procrastinate_jobs WHERE id = p_job_id;
        END IF;
    END IF;
    RETURN QUERY SELECT true, _status::text, _letter_id;
END;
$$;

-- A job its worker p_worker_id was still running when that worker's
-- shutdown grace ended (pgjobs.worker.interruptions). Only a job still 'doing'
-- under that worker is touched: applied is false otherwise (rescued as
-- stalled meanwhile, or not this worker's), so a late finish of a job
-- handed back never overwrites its new state. Every interruption is a
-- 'WorkerShutdown' row in the job's error history; ``interruptions`` counts
-- them, this one included. Below p_max_interruptions, the job goes back to
-- the queue to run again at once (status 'todo', scheduled time kept, no
-- attempt counted, row kind 'interruption'); a job whose abort was
-- requested ends 'aborted' instead. The p_max_interruptions-th interruption
-- and every later one are failed attempts (row kind 'error'), handled as
-- pgjobs.fail_job_attempt does: retried at p_retry_at, or failed for good
-- (dead letter) when p_retry_at is NULL.
CREATE FUNCTION pgjobs.interrupt_job(
    p_job_id bigint,
    p_worker_id bigint,
    p_error_message text,
    p_max_interruptions integer,
    p_retry_at timestamptz,
    p_new_priority integer,
    p_new_queue_name character varying,
    p_new_lock character varying,
    p_delete_job boolean
)
    RETURNS TABLE (
        applied boolean, status text, interruptions integer, dead_letter_id bigint)
    LANGUAGE plpgsql
AS $$
DECLARE
    _job procrastinate_jobs;
    _count integer;
    _status procrastinate_job_status;
BEGIN
    SELECT * INTO _job FROM procrastinate_jobs AS job
     WHERE job.id = p_job_id AND job.status = 'doing'
       AND job.worker_id = p_worker_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, NULL::text, NULL::integer, NULL::bigint;
        RETURN;
    END IF;
    SELECT count(*) + 1 INTO _count FROM pgjobs.job_errors AS e
     WHERE e.job_id = p_job_id AND e.error_type = 'WorkerShutdown';

    IF _count >= p_max_interruptions AND NOT _job.abort_requested THEN
        RETURN QUERY
        SELECT attempt.applied, attempt.status, _count, attempt.dead_letter_id
          FROM pgjobs.fail_job_attempt(
               p_job_id, 'WorkerShutdown',
               p_error_message || format(
                   ' (interruption %s, counted as a failed attempt:'
                   ' PGJOBS_MAX_INTERRUPTIONS=%s)', _count, p_max_interruptions),
               NULL, p_retry_at,
               p_new_priority, p_new_queue_name, p_new_lock, p_delete_job,
               NULL) AS attempt;
        RETURN;
    END IF;

    INSERT INTO pgjobs.job_errors
           (job_id, task_name, queue_name, attempt, error_type, error_message,
            traceback, worker_id, kind)
    VALUES (_job.id, _job.task_name, _job.queue_name, _job.attempts + 1,
            'WorkerShutdown',
            p_error_message || format(
                ' (interruption %s, not counted as an attempt:'
                ' PGJOBS_MAX_INTERRUPTIONS=%s)', _count, p_max_interruptions),
            NULL,
            _job.worker_id, 'interruption');
    UPDATE procrastinate_jobs AS job
       SET status = CASE WHEN job.abort_requested
                         THEN 'aborted'::procrastinate_job_status
                         ELSE 'todo'::procrastinate_job_status END,
           worker_id = NULL,
           abort_requested = false
     WHERE job.id = p_job_id
    RETURNING job.status INTO _status;
    RETURN QUERY SELECT true, _status::text, _count, NULL::bigint;
END;
$$;

-- Put a running job back in the queue for p_run_at without counting an
-- attempt (circuit breaker open). A job whose abort was requested ends
-- 'aborted' instead.
CREATE FUNCTION pgjobs.reschedule_job(p_job_id bigint, p_run_at timestamptz)
    RETURNS text
    LANGUAGE plpgsql
AS $$
DECLARE
    _status procrastinate_job_status;
BEGIN
    UPDATE procrastinate_jobs
       SET status = CASE WHEN abort_requested
                         THEN 'aborted'::procrastinate_job_status
                         ELSE 'todo'::procrastinate_job_status END,
           scheduled_at = CASE WHEN abort_requested
                               THEN scheduled_at ELSE p_run_at END,
           abort_requested = false
     WHERE id = p_job_id AND status = 'doing'
    RETURNING procrastinate_jobs.status INTO _status;
    IF _status IS NULL THEN
        RAISE 'Job was not found or not in "doing" status (job id: %)', p_job_id;
    END IF;
    RETURN _status::text;
END;
$$;

-- Run a failed job again (same id, attempts kept); its pending dead letters
-- are marked replayed by it. NULL when the job is not 'failed'.
CREATE FUNCTION pgjobs.retry_failed_job(p_job_id bigint)
    RETURNS bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    _job_id bigint;
BEGIN
    UPDATE procrastinate_jobs
       SET status = 'todo', scheduled_at = NULL
     WHERE id = p_job_id AND status = 'failed'
    RETURNING id INTO _job_id;
    IF _job_id IS NOT NULL THEN
        UPDATE pgjobs.dead_letters
           SET replayed_at = now(), replay_job_id = _job_id
         WHERE job_id = _job_id AND replayed_at IS NULL;
    END IF;
    RETURN _job_id;
END;
$$;

-- May a call protected by breaker p_name go ahead? Closed: yes, without a
-- lock or a write. Open: no until reopens_at, then the first caller turns it
-- half-open. Half-open: up to p_success_threshold trial calls; trials that
-- never report back are forgotten after the recovery window.
CREATE FUNCTION pgjobs.breaker_acquire(
    p_name text,
    p_failure_threshold integer,
    p_recovery_window interval,
    p_success_threshold integer
)
    RETURNS TABLE (allowed boolean, state text, retry_at timestamptz)
    LANGUAGE plpgsql
AS $$
DECLARE
    _breaker pgjobs.breakers;
BEGIN
    SELECT * INTO _breaker FROM pgjobs.breakers AS b WHERE b.name = p_name;
    IF NOT FOUND THEN
        INSERT INTO pgjobs.breakers
               (name, failure_threshold, recovery_window, success_threshold)
        VALUES (p_name, p_failure_threshold, p_recovery_window, p_success_threshold)
        ON CONFLICT (name) DO NOTHING;
        RETURN QUERY SELECT true, 'closed'::text, NULL::timestamptz;
        RETURN;
    END IF;
    IF _breaker.state = 'closed' THEN
        RETURN QUERY SELECT true, 'closed'::text, NULL::timestamptz;
        RETURN;
    END IF;

    SELECT * INTO _breaker FROM pgjobs.breakers AS b
     WHERE b.name = p_name FOR UPDATE;
    IF _breaker.state = 'open' AND _breaker.reopens_at > now() THEN
        RETURN QUERY SELECT false, 'open'::text, _breaker.reopens_at;
    ELSIF _breaker.state = 'open' THEN
        UPDATE pgjobs.breakers AS b
           SET state = 'half_open', trial_count = 1, success_count = 0,
               reopens_at = now() + p_recovery_window, updated_at = now()
         WHERE b.name = p_name;
        RETURN QUERY SELECT true, 'half_open'::text, NULL::timestamptz;
    ELSIF _breaker.state = 'half_open'
          AND (_breaker.trial_count < p_success_threshold
               OR _breaker.reopens_at <= now()) THEN
        UPDATE pgjobs.breakers AS b
           SET trial_count = CASE WHEN b.reopens_at <= now()
                                  THEN 1 ELSE b.trial_count + 1 END,
               success_count = CASE WHEN b.reopens_at <= now()
                                    THEN 0 ELSE b.success_count END,
               reopens_at = now() + p_recovery_window, updated_at = now()
         WHERE b.name = p_name;
        RETURN QUERY SELECT true, 'half_open'::text, NULL::timestamptz;
    ELSIF _breaker.state = 'half_open' THEN
        -- Trials are running: look again shortly.
        RETURN QUERY SELECT false, 'half_open'::text,
            least(_breaker.reopens_at, now() + interval '2 seconds');
    ELSE
        RETURN QUERY SELECT true, _breaker.state, NULL::timestamptz;
    END IF;
END;
$$;

-- Report the outcome of a protected call. Returns the state after it and
-- whether this call changed it. A success on a closed breaker without
-- failures writes nothing.
CREATE FUNCTION pgjobs.breaker_record(
    p_name text,
    p_success boolean,
    p_failure_threshold integer,
    p_recovery_window interval,
    p_success_threshold integer,
    p_error text
)
    RETURNS TABLE (state text, changed boolean)
    LANGUAGE plpgsql
AS $$
DECLARE
    _breaker pgjobs.breakers;
    _new_state text;
BEGIN
    IF p_success THEN
        SELECT * INTO _breaker FROM pgjobs.breakers AS b WHERE b.name = p_name;
        IF NOT FOUND OR (_breaker.state = 'closed' AND _breaker.failure_count = 0) THEN
            RETURN QUERY SELECT coalesce(_breaker.state, 'closed'), false;
            RETURN;
        END IF;
    ELSE
        INSERT INTO pgjobs.breakers
               (name, failure_threshold, recovery_window, success_threshold)
        VALUES (p_name, p_failure_threshold, p_recovery_window, p_success_threshold)
        ON CONFLICT (name) DO NOTHING;
    END IF;

    SELECT * INTO _breaker FROM pgjobs.breakers AS b
     WHERE b.name = p_name FOR UPDATE;
    IF p_success THEN
        IF _breaker.state = 'closed' THEN
            _new_state := 'closed';
            UPDATE pgjobs.breakers AS b SET failure_count = 0, updated_at = now()
             WHERE b.name = p_name;
        ELSIF _breaker.state = 'half_open'
              AND _breaker.success_count + 1 >= p_success_threshold THEN
            _new_state := 'closed';
            UPDATE pgjobs.breakers AS b
               SET state = 'closed', failure_count = 0, success_count = 0,
                   trial_count = 0, opened_at = NULL, reopens_at = NULL,
                   updated_at = now()
             WHERE b.name = p_name;
        ELSIF _breaker.state = 'half_open' THEN
            _new_state := 'half_open';
            UPDATE pgjobs.breakers AS b
               SET success_count = b.success_count + 1, updated_at = now()
             WHERE b.name = p_name;
        ELSE
            -- A call that started before the breaker opened: no evidence.
            _new_state := _breaker.state;
        END IF;
    ELSE
        IF _breaker.state = 'half_open'
           OR (_breaker.state = 'closed'
               AND _breaker.failure_count + 1 >= p_failure_threshold) THEN
            _new_state := 'open';
            UPDATE pgjobs.breakers AS b
               SET state = 'open', failure_count = b.failure_count + 1,
                   success_count = 0, trial_count = 0, opened_at = now(),
                   reopens_at = now() + p_recovery_window,
                   last_failure_at = now(), last_error = p_error,
                   failure_threshold = p_failure_threshold,
                   recovery_window = p_recovery_window,
                   success_threshold = p_success_threshold, updated_at = now()
             WHERE b.name = p_name;
        ELSE
            _new_state := _breaker.state;
            UPDATE pgjobs.breakers AS b
               SET failure_count = b.failure_count + 1,
                   last_failure_at = now(), last_error = p_error,
                   updated_at = now()
             WHERE b.name = p_name;
        END IF;
    END IF;
    RETURN QUERY SELECT _new_state, _new_state IS DISTINCT FROM _breaker.state;
END;
$$;
