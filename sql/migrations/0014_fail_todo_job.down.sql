-- pgjobs.fail_job_attempt as migration 0009 left it.

-- Record a failed attempt and move the job on, in one transaction: retried
-- at p_retry_at, or failed for good when p_retry_at is NULL (the trigger then
-- writes the dead letter). With p_stalled_after, only a job still 'doing' on
-- a worker without a recent heartbeat is touched, and a job another rescuer
-- holds is skipped: applied is false then. A job of such a worker that never
-- started (prefetched: no 'started' event since it was last queued, see
-- pgjobs.fetch_jobs) goes back to the queue with no attempt counted and no
-- error recorded: status 'released'.
CREATE OR REPLACE FUNCTION pgjobs.fail_job_attempt(
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
         WHERE id = p_job_id AND procrastinate_jobs.status = 'doing'
           FOR UPDATE;
        IF NOT FOUND THEN
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

    INSERT INTO pgjobs.job_errors
           (job_id, task_name, queue_name, attempt, error_type, error_message,
            traceback, worker_id)
    VALUES (_job.id, _job.task_name, _job.queue_name, _job.attempts + 1,
            p_error_type, coalesce(p_error_message, ''), p_traceback,
            _job.worker_id);

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
