-- Back to 0008: every claimed job starts at once, one outcome trigger call
-- per finished job, no guard against past periodic ticks.

DROP TRIGGER pgjobs_skip_past_periodic_tick ON procrastinate_periodic_defers;
DROP FUNCTION pgjobs.skip_past_periodic_tick();

DROP FUNCTION pgjobs.fetch_jobs(character varying[], bigint, integer, integer);

-- Claim up to p_limit jobs: procrastinate_fetch_job_v2's candidates (todo,
-- queue filter, scheduled_at reached, a job with a lock only when no job of
-- that lock runs and no earlier or higher-priority job of that lock waits),
-- its order (priority DESC, id ASC) and its SKIP LOCKED claim, plus the
-- 'started' events. At most one job per lock is ever a candidate, so a
-- batch never holds two jobs of one lock.
-- Planned once per connection, not per call: a plan-cached PL/pgSQL body
-- with a generic plan (planning a claim cost more than running it: 0.55 ms
-- per claim with EXECUTE against 0.2 ms for procrastinate's own). The
-- claimed ids go through an array so the generic plan updates them by
-- primary key, and sorts and sequential scans are off so that, whatever
-- the table looked like when the plan was made, it walks the priority index
-- in order and stops at p_limit: a plan made while the table was nearly
-- empty (a worker started on a new database) would otherwise sort every
-- waiting job, or scan the whole table, once it has grown, until the next
-- ANALYZE (warmed on 50 rows, then at 85,000: 8.7 ms per claim and finish
-- of 10 jobs instead of 1.6 ms).
CREATE FUNCTION pgjobs.fetch_jobs(
    target_queue_names character varying[],
    p_worker_id bigint,
    p_limit integer
)
    RETURNS SETOF procrastinate_jobs
    LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan
    SET enable_sort = off
    SET enable_seqscan = off
AS $$
BEGIN
    PERFORM set_config('pgjobs.batch_events', 'on', true);
    RETURN QUERY
    WITH claimed AS (
        UPDATE procrastinate_jobs AS jobs
           SET status = 'doing', worker_id = p_worker_id
         WHERE jobs.id = ANY(ARRAY(
            SELECT todo.id
              FROM procrastinate_jobs AS todo
             WHERE todo.status = 'todo'
               AND (target_queue_names IS NULL
                    OR todo.queue_name = ANY(target_queue_names))
               AND (todo.scheduled_at IS NULL OR todo.scheduled_at <= now())
               AND (todo.lock IS NULL
                    OR ((SELECT 1
                           FROM procrastinate_jobs AS running
                          WHERE running.lock = todo.lock
                            AND running.status = 'doing'
                          LIMIT 1) IS NULL
                        AND todo.id = (SELECT first.id
                                         FROM procrastinate_jobs AS first
                                        WHERE first.lock = todo.lock
                                          AND first.status = 'todo'
                                        ORDER BY first.priority DESC, first.id ASC
                                        LIMIT 1)))
             ORDER BY todo.priority DESC, todo.id ASC
             LIMIT greatest(p_limit, 0)
               FOR UPDATE OF todo SKIP LOCKED))
        RETURNING jobs.*
    ), started AS (
        INSERT INTO procrastinate_events (job_id, type)
        SELECT claimed.id, 'started'::procrastinate_job_event_type
          FROM claimed
    )
    SELECT * FROM claimed;
    PERFORM set_config('pgjobs.batch_events', 'off', true);
END;
$$;

DROP FUNCTION pgjobs.finish_jobs(bigint[], procrastinate_job_status[], boolean[], bigint[]);

-- procrastinate_finish_job_v1 for many jobs at once, with its status events.
-- Returns the ids it finished; a job no longer todo/doing (e.g. rescued
-- meanwhile) is skipped instead of failing the whole batch. PL/pgSQL so that
-- the plan is cached (a SQL function is planned on every call).
CREATE FUNCTION pgjobs.finish_jobs(
    p_ids bigint[],
    p_statuses procrastinate_job_status[],
    p_delete boolean[]
)
    RETURNS SETOF bigint
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM set_config('pgjobs.batch_events', 'on', true);
    RETURN QUERY
    WITH finished AS (
        SELECT f.id, f.status, f.delete_job
          FROM unnest(p_ids, p_statuses, p_delete) AS f(id, status, delete_job)
         WHERE f.status IN ('succeeded', 'failed', 'aborted')
    ),
    current AS (
        SELECT jobs.id, jobs.status AS old_status
          FROM procrastinate_jobs AS jobs
         WHERE jobs.id = ANY(p_ids)
           AND jobs.status IN ('todo', 'doing')
           FOR UPDATE OF jobs
    ),
    deleted AS (
        DELETE FROM procrastinate_jobs AS jobs
         USING finished, current
         WHERE finished.delete_job
           AND jobs.id = finished.id
           AND current.id = finished.id
        RETURNING jobs.id
    ),
    updated AS (
        UPDATE procrastinate_jobs AS jobs
           SET status = finished.status,
               abort_requested = false,
               attempts = CASE current.old_status
                              WHEN 'doing' THEN jobs.attempts + 1
                              ELSE jobs.attempts
                          END
          FROM finished, current
         WHERE NOT finished.delete_job
           AND jobs.id = finished.id
           AND current.id = finished.id
        RETURNING jobs.id, jobs.status, current.old_status
    ),
    -- procrastinate's status events (its row trigger is skipped while
    -- pgjobs.batch_events is on): doing -> succeeded/failed/aborted, and
    -- todo -> succeeded/failed is a cancellation.
    events AS (
        INSERT INTO procrastinate_events (job_id, type)
        SELECT updated.id,
               CASE WHEN updated.old_status = 'doing'
                    THEN updated.status::text
                    ELSE 'cancelled'
               END::procrastinate_job_event_type
          FROM updated
         WHERE updated.old_status = 'doing'
            OR updated.status IN ('succeeded', 'failed')
         ORDER BY updated.id
    )
    SELECT deleted.id FROM deleted
    UNION ALL
    SELECT updated.id FROM updated;
    PERFORM set_config('pgjobs.batch_events', 'off', true);
END;
$$;

DROP TRIGGER pgjobs_record_periodic_outcome ON procrastinate_jobs;

-- A finished job of a schedule or of a code-declared periodic task records
-- its outcome there, in the statement that finishes it: health survives the
-- pruning of old jobs. Periodic jobs deferred by procrastinate carry a
-- "timestamp" argument; that and the task name identify them.
CREATE OR REPLACE FUNCTION pgjobs.record_periodic_outcome()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    _failed boolean := NEW.status = 'failed';
    _error text;
BEGIN
    IF _failed THEN
        SELECT e.error_type || ': ' || e.error_message INTO _error
          FROM pgjobs.job_errors AS e
         WHERE e.job_id = NEW.id
         ORDER BY e.id DESC
         LIMIT 1;
        _error := coalesce(_error, 'job failed');
    END IF;
    WITH finished AS (
        UPDATE pgjobs.schedule_runs AS r
           SET status = NEW.status::text, finished_at = now()
         WHERE r.job_id = NEW.id
        RETURNING r.schedule_id
    )
    UPDATE pgjobs.schedules AS s
       SET last_success_at = CASE WHEN _failed THEN s.last_success_at ELSE now() END,
           last_failure_at = CASE WHEN _failed THEN now() ELSE s.last_failure_at END,
           last_error = CASE WHEN _failed THEN _error ELSE s.last_error END
      FROM finished
     WHERE s.id = finished.schedule_id;
    IF NEW.args ? 'timestamp' THEN
        UPDATE pgjobs.periodic_tasks AS p
           SET last_success_at = CASE WHEN _failed THEN p.last_success_at ELSE now() END,
               last_failure_at = CASE WHEN _failed THEN now() ELSE p.last_failure_at END,
               last_error = CASE WHEN _failed THEN _error ELSE p.last_error END
         WHERE p.task_name = NEW.task_name;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER pgjobs_record_periodic_outcome
    AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed') AND OLD.status <> NEW.status)
    EXECUTE FUNCTION pgjobs.record_periodic_outcome();

DROP FUNCTION pgjobs.record_job_outcome(bigint, procrastinate_job_status, text, boolean);

-- Record a failed attempt and move the job on, in one transaction: retried
-- at p_retry_at, or failed for good when p_retry_at is NULL (the trigger then
-- writes the dead letter). With p_stalled_after, only a job still 'doing' on
-- a worker without a recent heartbeat is touched, and a job another rescuer
-- holds is skipped: applied is false then.
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
