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
