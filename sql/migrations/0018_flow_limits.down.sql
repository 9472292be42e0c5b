CREATE OR REPLACE FUNCTION pgjobs.fetch_jobs(
    target_queue_names character varying[],
    p_worker_id bigint,
    p_limit integer,
    p_start integer DEFAULT NULL
)
    RETURNS SETOF procrastinate_jobs
    LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan
    SET enable_sort = off
    SET enable_seqscan = off
    SET jit = off
AS $$
DECLARE
    _queues character varying[] := target_queue_names;
    _paused character varying[];
    _deadlines boolean;
BEGIN
    SELECT array_agg(paused.queue_name::character varying) INTO _paused
      FROM pgjobs.paused_queues AS paused;
    IF _paused IS NOT NULL AND _queues IS NOT NULL THEN
        _queues := ARRAY(SELECT unnest(_queues) EXCEPT SELECT unnest(_paused));
        _paused := NULL;
        IF cardinality(_queues) = 0 THEN
            RETURN;
        END IF;
    END IF;
    _deadlines := EXISTS (SELECT FROM pgjobs.job_deadlines AS deadline
                           WHERE deadline.expired_at IS NULL
                             AND deadline.expires_at <= now());
    IF _deadlines THEN
        PERFORM pgjobs.expire_jobs(100);
    END IF;
    PERFORM set_config('pgjobs.batch_events', 'on', true);
    RETURN QUERY
    WITH claimed AS (
        UPDATE procrastinate_jobs AS jobs
           SET status = 'doing', worker_id = p_worker_id
         WHERE jobs.id = ANY(ARRAY(
            SELECT todo.id
              FROM procrastinate_jobs AS todo
             WHERE todo.status = 'todo'
               AND (_queues IS NULL OR todo.queue_name = ANY(_queues))
               AND (_paused IS NULL OR todo.queue_name <> ALL(_paused))
               AND (todo.scheduled_at IS NULL OR todo.scheduled_at <= now())
               -- A probe per candidate (LIMIT: not a hash of every deadline).
               AND (NOT _deadlines
                    OR (SELECT 1
                          FROM pgjobs.job_deadlines AS deadline
                         WHERE deadline.job_id = todo.id
                           AND deadline.expires_at <= now()
                         LIMIT 1) IS NULL)
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
        SELECT ranked.id, 'started'::procrastinate_job_event_type
          FROM (SELECT claimed.id,
                       row_number() OVER (ORDER BY claimed.priority DESC,
                                                   claimed.id ASC) AS rank
                  FROM claimed) AS ranked
         WHERE p_start IS NULL OR ranked.rank <= p_start
    )
    SELECT * FROM claimed;
    PERFORM set_config('pgjobs.batch_events', 'off', true);
END;
$$;

DROP FUNCTION pgjobs.job_limit_reasons(bigint);
DROP FUNCTION pgjobs.limits_next_start();
DROP FUNCTION pgjobs.sync_declared_limits(text[], jsonb);
DROP FUNCTION pgjobs.set_task_limit(text, text, text, text, integer, interval, text);
DROP INDEX pgjobs_jobs_task_rank_idx;
DROP TABLE pgjobs.limit_starts;
DROP TABLE pgjobs.limit_slots;
DROP VIEW pgjobs.effective_task_limits;
DROP TABLE pgjobs.task_limits;
