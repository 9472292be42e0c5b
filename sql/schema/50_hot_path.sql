-- The worker's hot path: claim several jobs in one statement, finish several
-- in one, and a heartbeat that re-creates a worker row pruned during an outage.

-- Walked by pgjobs.fetch_jobs: two index probes per candidate job that has a
-- lock (procrastinate's anti-join form scans every waiting job: 19 s at 50,000).
CREATE INDEX pgjobs_jobs_lock_rank_idx
    ON procrastinate_jobs (lock, priority DESC, id)
    WHERE status = 'todo' AND lock IS NOT NULL;

-- procrastinate's status-event trigger fires once per updated row (a
-- PL/pgSQL call and an INSERT each: about a third of a claim's cost). The
-- worker's batch functions set pgjobs.batch_events for their own statement
-- and insert the same events in one INSERT; every other update (retries,
-- cancellations, procrastinate's own functions) still goes through the
-- trigger.
DROP TRIGGER procrastinate_trigger_status_events_update_v1 ON procrastinate_jobs;
CREATE TRIGGER procrastinate_trigger_status_events_update_v1
    AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW
    WHEN (current_setting('pgjobs.batch_events', true) IS DISTINCT FROM 'on')
    EXECUTE PROCEDURE procrastinate_trigger_function_status_events_update_v1();

-- Claim up to p_limit jobs: procrastinate_fetch_job_v2's candidates (todo,
-- queue filter, scheduled_at reached, a job with a lock only when no job of
-- that lock runs and no earlier or higher-priority job of that lock waits),
-- its order (priority DESC, id ASC) and its SKIP LOCKED claim, plus the
-- 'started' events. At most one job per lock is ever a candidate, so a
-- batch never holds two jobs of one lock.
-- Flow control (sql/schema/35_flow_control.sql): jobs of a paused queue are
-- no candidates (the queue filter loses the paused queues, and a claim left
-- with none returns at once; a claim of every queue skips their jobs as it
-- walks), and neither is a job whose start-by deadline has passed: a claim
-- that finds a deadline due first expires up to 100 such jobs. Nothing
-- paused and no deadline due: two index probes per claim.
-- Concurrency and rate limits (sql/schema/36_flow_limits.sql): with none
-- in force, one probe of pgjobs.task_limits and the claim as before; else
-- each limited task's jobs are claimed within what its limits leave, under a
-- lock of its limit rows, and the other tasks' jobs as before (or, while
-- limited jobs wait, from the per-task index so as not to walk them).
-- p_start: how many of them (the first, in that order) start now and get
-- their 'started' event; NULL: all. The others are prefetched (see
-- pgjobs.job_worker): 'doing' without a 'started' event until the worker
-- starts them (pgjobs.finish_jobs writes it then), which is how a rescue
-- tells a job that never started from one that was running.
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
-- JIT is off: before PostgreSQL 18 a disabled plan node (the sort that ranks
-- the claimed jobs) costs 10^10, far above jit_above_cost, so a server built
-- with LLVM (JIT is on by default) compiled the statement on every claim:
-- 250-450 ms per claim of 10 jobs on PostgreSQL 15 instead of 1 ms.
CREATE FUNCTION pgjobs.fetch_jobs(
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
    _limited character varying[];
    _unlimited character varying[];
    _lim record;
    _room integer;
    _budget integer;
    _key_budget integer;
    _key text;
    _full text[];
    _now timestamptz;
    _n integer;
    _taken integer := 0;
    _held boolean := false;
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
    -- Limits (sql/schema/36_flow_limits.sql): none in force, the claim at the
    -- end as it was; else the limited branch first.
    SELECT array_agg(DISTINCT lim.task_name::character varying) INTO _limited
      FROM pgjobs.effective_task_limits AS lim;
    PERFORM set_config('pgjobs.batch_events', 'on', true);
    IF _limited IS NOT NULL THEN
        -- Every statement below reads one task's jobs from
        -- pgjobs_jobs_task_rank_idx: the task as a range, and the task first in
        -- the order, because a generic plan takes a task for 1/n of the jobs and
        -- would walk the priority index instead, through every other task's jobs.
        -- Limited tasks first, one at a time: their limit rows locked (in task
        -- order: no deadlock), then what runs and what started in the window
        -- counted, each statement with a fresh snapshot (plpgsql, read
        -- committed: it sees what the claim that held the lock before
        -- committed), then up to the budget claimed from the task's own index.
        -- Limited jobs are never prefetched: their claim is their start.
        _room := coalesce(p_start, p_limit);
        FOR _lim IN
            SELECT lim.task_name,
                   max(lim.amount) FILTER (WHERE lim.scope = 'task'
                                             AND lim.kind = 'concurrency') AS task_running,
                   max(lim.amount) FILTER (WHERE lim.scope = 'task'
                                             AND lim.kind = 'rate') AS task_rate,
                   max(lim.period) FILTER (WHERE lim.scope = 'task'
                                             AND lim.kind = 'rate') AS task_period,
                   max(lim.key_arg) FILTER (WHERE lim.scope = 'key') AS key_arg,
                   max(lim.amount) FILTER (WHERE lim.scope = 'key'
                                             AND lim.kind = 'concurrency') AS key_running,
                   max(lim.amount) FILTER (WHERE lim.scope = 'key'
                                             AND lim.kind = 'rate') AS key_rate,
                   max(lim.period) FILTER (WHERE lim.scope = 'key'
                                             AND lim.kind = 'rate') AS key_period
              FROM pgjobs.effective_task_limits AS lim
             GROUP BY lim.task_name
             ORDER BY lim.task_name
        LOOP
            IF _room <= 0 THEN
                _held := true;
                EXIT;
            END IF;
            CONTINUE WHEN NOT EXISTS (
                SELECT FROM procrastinate_jobs AS todo
                 WHERE todo.status = 'todo'
                   AND todo.task_name >= _lim.task_name
                   AND todo.task_name <= _lim.task_name
                   AND (_queues IS NULL OR todo.queue_name = ANY(_queues)));
            _held := true;
            PERFORM FROM pgjobs.task_limits AS limits
              WHERE limits.task_name = _lim.task_name
              ORDER BY limits.scope, limits.kind
                FOR UPDATE;
            _now := clock_timestamp();
            IF _lim.task_running IS NOT NULL OR _lim.key_running IS NOT NULL THEN
                DELETE FROM pgjobs.limit_slots AS slot
                 WHERE slot.task_name = _lim.task_name
                   AND NOT EXISTS (SELECT FROM procrastinate_jobs AS doing
                                    WHERE doing.id = slot.job_id
                                      AND doing.status = 'doing');
            END IF;
            IF _lim.task_rate IS NOT NULL OR _lim.key_rate IS NOT NULL THEN
                DELETE FROM pgjobs.limit_starts AS start
                 WHERE start.task_name = _lim.task_name
                   AND start.started_at <= _now - greatest(
                           coalesce(_lim.task_period, interval '0'),
                           coalesce(_lim.key_period, interval '0'));
            END IF;
            _budget := _room;
            IF _lim.task_running IS NOT NULL THEN
                _budget := least(_budget, _lim.task_running
                    - (SELECT count(*) FROM pgjobs.limit_slots AS slot
                        WHERE slot.task_name = _lim.task_name)::integer);
            END IF;
            IF _lim.task_rate IS NOT NULL THEN
                _budget := least(_budget, _lim.task_rate
                    - (SELECT count(*) FROM pgjobs.limit_starts AS start
                        WHERE start.task_name = _lim.task_name
                          AND start.limit_key IS NULL
                          AND start.started_at > _now - _lim.task_period)::integer);
            END IF;
            _full := '{}';
            -- Per key: keys in the order of their first waiting job, each given
            -- what its own limits leave, so a full key never holds back the
            -- others. No per-key limit: one pass with _key NULL.
            WHILE _budget > 0 LOOP
                _key := NULL;
                _key_budget := _budget;
                IF _lim.key_arg IS NOT NULL THEN
                    SELECT coalesce(todo.args ->> _lim.key_arg, '') INTO _key
                      FROM procrastinate_jobs AS todo
                     WHERE todo.task_name >= _lim.task_name
                       AND todo.task_name <= _lim.task_name
                       AND coalesce(todo.args ->> _lim.key_arg, '') <> ALL(_full)
                       AND todo.status = 'todo'
                       AND (_queues IS NULL OR todo.queue_name = ANY(_queues))
                       AND (_paused IS NULL OR todo.queue_name <> ALL(_paused))
                       AND (todo.scheduled_at IS NULL OR todo.scheduled_at <= now())
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
                     ORDER BY todo.task_name, todo.priority DESC, todo.id ASC
                     LIMIT 1;
                    EXIT WHEN NOT FOUND;
                    _full := _full || _key;
                    IF _lim.key_running IS NOT NULL THEN
                        _key_budget := least(_key_budget, _lim.key_running
                            - (SELECT count(*) FROM pgjobs.limit_slots AS slot
                                WHERE slot.task_name = _lim.task_name
                                  AND slot.limit_key = _key)::integer);
                    END IF;
                    IF _lim.key_rate IS NOT NULL THEN
                        _key_budget := least(_key_budget, _lim.key_rate
                            - (SELECT count(*) FROM pgjobs.limit_starts AS start
                                WHERE start.task_name = _lim.task_name
                                  AND start.limit_key = _key
                                  AND start.started_at > _now - _lim.key_period)::integer);
                    END IF;
                    CONTINUE WHEN _key_budget <= 0;
                END IF;
                RETURN QUERY
                WITH claimed AS (
                    UPDATE procrastinate_jobs AS jobs
                       SET status = 'doing', worker_id = p_worker_id
                     WHERE jobs.id = ANY(ARRAY(
                        SELECT todo.id
                          FROM procrastinate_jobs AS todo
                         WHERE todo.task_name >= _lim.task_name
                           AND todo.task_name <= _lim.task_name
                           AND (_key IS NULL
                                OR coalesce(todo.args ->> _lim.key_arg, '') = _key)
                           AND todo.status = 'todo'
                           AND (_queues IS NULL OR todo.queue_name = ANY(_queues))
                           AND (_paused IS NULL OR todo.queue_name <> ALL(_paused))
                           AND (todo.scheduled_at IS NULL OR todo.scheduled_at <= now())
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
                         ORDER BY todo.task_name, todo.priority DESC, todo.id ASC
                         LIMIT _key_budget
                           FOR UPDATE OF todo SKIP LOCKED))
                    RETURNING jobs.*
                ), started AS (
                    INSERT INTO procrastinate_events (job_id, type)
                    SELECT claimed.id, 'started'::procrastinate_job_event_type
                      FROM claimed
                ), slots AS (
                    INSERT INTO pgjobs.limit_slots (job_id, task_name, limit_key)
                    SELECT claimed.id, _lim.task_name, _key
                      FROM claimed
                     WHERE _lim.task_running IS NOT NULL OR _lim.key_running IS NOT NULL
                    ON CONFLICT (job_id) DO UPDATE
                       SET task_name = excluded.task_name, limit_key = excluded.limit_key
                ), starts AS (
                    INSERT INTO pgjobs.limit_starts (task_name, limit_key, started_at)
                    SELECT _lim.task_name, NULL::text, _now
                      FROM claimed WHERE _lim.task_rate IS NOT NULL
                    UNION ALL
                    SELECT _lim.task_name, _key, _now
                      FROM claimed WHERE _lim.key_rate IS NOT NULL
                )
                SELECT * FROM claimed;
                GET DIAGNOSTICS _n = ROW_COUNT;
                _budget := _budget - _n;
                _room := _room - _n;
                _taken := _taken + _n;
                EXIT WHEN _key IS NULL;
            END LOOP;
        END LOOP;
        IF _taken > 0 THEN
            -- No prefetch in a claim that took limited jobs: all it returns
            -- starts now.
            p_limit := greatest(coalesce(p_start, p_limit) - _taken, 0);
            p_start := NULL;
        END IF;
        IF _held THEN
            -- Limited jobs wait: the other tasks' names with waiting jobs (a
            -- skip scan of pgjobs_jobs_task_rank_idx, a probe per task), the
            -- first p_limit candidates of each from the same index, then the
            -- first p_limit of those, so held-back jobs are never walked. None
            -- waits: the claim below (which skips the limited tasks' jobs
            -- enqueued meanwhile).
            _unlimited := ARRAY(
                WITH RECURSIVE names AS (
                    (SELECT todo.task_name
                       FROM procrastinate_jobs AS todo
                      WHERE todo.status = 'todo'
                      ORDER BY todo.task_name
                      LIMIT 1)
                    UNION ALL
                    SELECT (SELECT todo.task_name
                              FROM procrastinate_jobs AS todo
                             WHERE todo.status = 'todo'
                               AND todo.task_name > names.task_name
                             ORDER BY todo.task_name
                             LIMIT 1)
                      FROM names
                     WHERE names.task_name IS NOT NULL
                )
                SELECT names.task_name FROM names
                 WHERE names.task_name IS NOT NULL
                   AND names.task_name <> ALL(_limited));
            RETURN QUERY
            WITH claimed AS (
                UPDATE procrastinate_jobs AS jobs
                   SET status = 'doing', worker_id = p_worker_id
                 WHERE jobs.id = ANY(ARRAY(
                    SELECT todo.id
                      FROM procrastinate_jobs AS todo
                     WHERE todo.id = ANY(ARRAY(
                            SELECT candidate.id
                              FROM unnest(_unlimited) AS task(name)
                             CROSS JOIN LATERAL (
                                SELECT todo.id, todo.priority
                                  FROM procrastinate_jobs AS todo
                                 WHERE todo.task_name >= task.name
                                   AND todo.task_name <= task.name
                                   AND todo.status = 'todo'
                                   AND (_queues IS NULL OR todo.queue_name = ANY(_queues))
                                   AND (_paused IS NULL OR todo.queue_name <> ALL(_paused))
                                   AND (todo.scheduled_at IS NULL OR todo.scheduled_at <= now())
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
                                 ORDER BY todo.task_name, todo.priority DESC, todo.id ASC
                                 LIMIT greatest(p_limit, 0)) AS candidate
                             ORDER BY candidate.priority DESC, candidate.id ASC
                             LIMIT greatest(p_limit, 0)))
                       AND todo.status = 'todo'
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
            RETURN;
        END IF;
    END IF;
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
               -- Limited tasks' jobs: only through the branch above.
               AND (_limited IS NULL OR todo.task_name <> ALL(_limited))
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

-- procrastinate_finish_job_v1 for many jobs at once, with its status events.
-- Returns the jobs it finished (started false); a job no longer todo/doing
-- (e.g. rescued meanwhile) is skipped instead of failing the whole batch.
-- PL/pgSQL so that the plan is cached (a SQL function is planned on every
-- call). No JIT, like pgjobs.fetch_jobs: compiling costs hundreds of ms,
-- running it well under one.
-- p_started_ids: prefetched jobs the worker is about to start (see
-- pgjobs.fetch_jobs): their 'started' events are written first, for those
-- still 'doing', and returned (started true); the worker starts only those.
-- Those whose queue was paused, or whose start-by deadline passed, while
-- they waited in memory go back to 'todo' instead, with no attempt counted
-- (the next claim expires the late ones), and are returned with started
-- NULL.
-- The outcomes of schedule and periodic-task jobs are recorded here for the
-- whole batch (pgjobs.record_periodic_outcome's row trigger is skipped while
-- pgjobs.batch_events is on): an index probe per job instead of a trigger
-- call per job, and nothing more for jobs that are neither.
-- p_worker_id: the worker writing the outcomes; only jobs still 'doing'
-- under it are finished (after a failover a job id lost in the replication
-- lag window can name another job: its outcome must not land on it).
CREATE FUNCTION pgjobs.finish_jobs(
    p_ids bigint[],
    p_statuses procrastinate_job_status[],
    p_delete boolean[],
    p_started_ids bigint[] DEFAULT '{}',
    p_worker_id bigint DEFAULT NULL
)
    RETURNS TABLE (job bigint, started boolean)
    LANGUAGE plpgsql
    SET jit = off
AS $$
DECLARE
    _done record;
BEGIN
    IF cardinality(p_started_ids) > 0 THEN
        -- Before batch_events is on: procrastinate's trigger writes their
        -- events, as for pgjobs.release_jobs.
        RETURN QUERY
        UPDATE procrastinate_jobs AS held
           SET status = 'todo', worker_id = NULL
         WHERE held.id = ANY(p_started_ids)
           AND held.status = 'doing'
           AND (p_worker_id IS NULL OR held.worker_id = p_worker_id)
           AND (EXISTS (SELECT FROM pgjobs.paused_queues AS paused
                         WHERE paused.queue_name = held.queue_name)
                OR EXISTS (SELECT FROM pgjobs.job_deadlines AS deadline
                            WHERE deadline.job_id = held.id
                              AND deadline.expires_at <= now()))
        RETURNING held.id, NULL::boolean;
    END IF;
    PERFORM set_config('pgjobs.batch_events', 'on', true);
    IF cardinality(p_started_ids) > 0 THEN
        RETURN QUERY
        WITH recorded AS (
            INSERT INTO procrastinate_events (job_id, type)
            SELECT doing.id, 'started'::procrastinate_job_event_type
              FROM procrastinate_jobs AS doing
             WHERE doing.id = ANY(p_started_ids)
               AND doing.status = 'doing'
               AND (p_worker_id IS NULL OR doing.worker_id = p_worker_id)
             ORDER BY doing.id
            RETURNING procrastinate_events.job_id
        )
        SELECT recorded.job_id, true FROM recorded;
    END IF;
    FOR _done IN
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
               AND (p_worker_id IS NULL
                    OR (jobs.status = 'doing' AND jobs.worker_id = p_worker_id))
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
                   -- A finished job keeps no worker (pgjobs.clear_job_worker).
                   worker_id = NULL,
                   abort_requested = false,
                   attempts = CASE current.old_status
                                  WHEN 'doing' THEN jobs.attempts + 1
                                  ELSE jobs.attempts
                              END
              FROM finished, current
             WHERE NOT finished.delete_job
               AND jobs.id = finished.id
               AND current.id = finished.id
            RETURNING jobs.id, jobs.status, current.old_status, jobs.task_name,
                      jobs.args ? 'timestamp' AS periodic
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
        SELECT deleted.id, false AS recorded, NULL::procrastinate_job_status AS status,
               NULL::text AS task_name, false AS periodic
          FROM deleted
        UNION ALL
        SELECT updated.id,
               updated.status IN ('succeeded', 'failed')
                   AND updated.old_status <> updated.status
                   AND (updated.periodic
                        OR EXISTS (SELECT 1 FROM pgjobs.schedule_runs AS run
                                    WHERE run.job_id = updated.id)),
               updated.status, updated.task_name::text, updated.periodic
          FROM updated
    LOOP
        IF _done.recorded THEN
            PERFORM pgjobs.record_job_outcome(
                _done.id, _done.status, _done.task_name, _done.periodic);
        END IF;
        job := _done.id;
        started := false;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('pgjobs.batch_events', 'off', true);
END;
$$;

-- procrastinate_update_heartbeat_v1, plus what a failover needs
-- (pgjobs.worker.reconcile):
-- - a worker whose row is gone (pruned while it could not reach the
--   database, or lost in a failover's replication lag window) gets it back
--   under the same id, so its claims stay valid, and the id sequence is
--   moved past it so that no new worker is given it again;
-- - the jobs the worker holds (p_held) are stored in pgjobs.worker_states,
--   and the function returns its 'doing' jobs it does not hold (unheld) and
--   its orphans: those it held at neither this heartbeat nor the one before;
-- - a worker id another worker process (another p_token) has taken meanwhile
--   (ids handed out in the lag window are handed out again after a
--   failover): the worker is registered anew, its held jobs move to the new
--   id, and the new id is returned.
CREATE FUNCTION pgjobs.worker_heartbeat(
    p_worker_id bigint, p_token uuid, p_held bigint[]
)
    RETURNS TABLE (worker_id bigint, unheld bigint[], orphans bigint[])
    LANGUAGE plpgsql
AS $$
DECLARE
    _id bigint := p_worker_id;
    _owner uuid;
    _created boolean;
    _unheld bigint[];
    _orphans bigint[];
BEGIN
    SELECT state.token INTO _owner
      FROM pgjobs.worker_states AS state
     WHERE state.worker_id = p_worker_id
       FOR UPDATE;
    IF _owner IS DISTINCT FROM p_token AND _owner IS NOT NULL THEN
        INSERT INTO procrastinate_workers DEFAULT VALUES
        RETURNING procrastinate_workers.id INTO _id;
        UPDATE procrastinate_jobs AS job
           SET worker_id = _id
         WHERE job.id = ANY(p_held)
           AND job.worker_id = p_worker_id
           AND job.status = 'doing';
    ELSE
        INSERT INTO procrastinate_workers (id, last_heartbeat) OVERRIDING SYSTEM VALUE
        VALUES (p_worker_id, now())
        ON CONFLICT (id) DO UPDATE SET last_heartbeat = now()
        RETURNING xmax = 0 INTO _created;
        IF _created AND p_worker_id
                        >= (SELECT seq.last_value FROM procrastinate_workers_id_seq AS seq)
        THEN
            PERFORM setval(pg_get_serial_sequence('procrastinate_workers', 'id'),
                           p_worker_id);
        END IF;
    END IF;
    SELECT coalesce(array_agg(job.id ORDER BY job.id), '{}') INTO _unheld
      FROM procrastinate_jobs AS job
     WHERE job.worker_id = _id
       AND job.status = 'doing'
       AND job.id <> ALL(p_held);
    INSERT INTO pgjobs.worker_states AS state
           (worker_id, token, held, unheld, orphans, beat_at)
    VALUES (_id, p_token, p_held, _unheld, '{}', now())
    ON CONFLICT ON CONSTRAINT worker_states_pkey DO UPDATE
       SET held = excluded.held,
           unheld = excluded.unheld,
           orphans = ARRAY(SELECT unnest(excluded.unheld)
                           INTERSECT
                           SELECT unnest(state.unheld)
                           ORDER BY 1),
           beat_at = excluded.beat_at
    RETURNING state.orphans INTO _orphans;
    RETURN QUERY SELECT _id, _unheld, _orphans;
END;
$$;

-- Put back in the queue the jobs p_ids still 'doing' under p_worker_id
-- (its orphans: see pgjobs.worker_heartbeat), with no attempt counted.
CREATE FUNCTION pgjobs.release_jobs(p_worker_id bigint, p_ids bigint[])
    RETURNS SETOF bigint
    LANGUAGE sql
AS $$
    UPDATE procrastinate_jobs
       SET status = 'todo', worker_id = NULL
     WHERE id = ANY(p_ids)
       AND worker_id = p_worker_id
       AND status = 'doing'
    RETURNING id;
$$;

-- The heartbeat moves the id sequence past a worker row it re-creates.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_worker') THEN
        GRANT UPDATE ON SEQUENCE procrastinate_workers_id_seq TO pgjobs_worker;
    END IF;
END;
$$;

-- Enqueueing in bulk: procrastinate's per-row insert triggers (two NOTIFYs
-- and one 'deferred' event INSERT per job) become one per-statement trigger
-- over the inserted rows: one event INSERT and one NOTIFY per queue (plus
-- one on the any-queue channel) per statement. Workers only read the
-- notification's type, so what they see is unchanged.
CREATE FUNCTION pgjobs.notify_jobs_inserted()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    _queue record;
    _first bigint;
BEGIN
    INSERT INTO procrastinate_events (job_id, type)
    SELECT id, 'deferred'::procrastinate_job_event_type
      FROM new_jobs
     WHERE status = 'todo'
     ORDER BY id;
    FOR _queue IN
        SELECT queue_name, min(id) AS job_id
          FROM new_jobs
         WHERE status = 'todo'
         GROUP BY queue_name
    LOOP
        -- A channel name has at most 63 bytes: a queue whose name is longer
        -- than 40 bytes gets no channel of its own (procrastinate's per-row
        -- trigger failed the insert instead); the any-queue channel and
        -- polling still wake its workers.
        IF octet_length('procrastinate_queue_v1#' || _queue.queue_name) <= 63 THEN
            PERFORM pg_notify('procrastinate_queue_v1#' || _queue.queue_name,
                              json_build_object('type', 'job_inserted',
                                                'job_id', _queue.job_id)::text);
        END IF;
        _first := least(_first, _queue.job_id);
    END LOOP;
    IF _first IS NOT NULL THEN
        PERFORM pg_notify('procrastinate_any_queue_v1',
                          json_build_object('type', 'job_inserted',
                                            'job_id', _first)::text);
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER procrastinate_jobs_notify_queue_job_inserted_v1 ON procrastinate_jobs;
DROP TRIGGER procrastinate_trigger_status_events_insert_v1 ON procrastinate_jobs;
CREATE TRIGGER pgjobs_jobs_inserted
    AFTER INSERT ON procrastinate_jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT
    EXECUTE FUNCTION pgjobs.notify_jobs_inserted();

-- Enqueueing from pgjobs' API: the batch travels as one jsonb array (cheap to
-- send from Python) instead of an array of composites. Same semantics as
-- pgjobs.defer_jobs: one id per input in input order, NULL for a job whose
-- queueing lock is held by a waiting job.
CREATE FUNCTION pgjobs.defer_jobs_json(jobs jsonb)
    RETURNS bigint[]
    LANGUAGE plpgsql
AS $$
BEGIN
    RETURN pgjobs.defer_jobs(array(
        SELECT ROW(job ->> 'queue_name', job ->> 'task_name',
                   (job ->> 'priority')::integer, job ->> 'lock',
                   job ->> 'queueing_lock', job -> 'args',
                   (job ->> 'scheduled_at')::timestamptz
               )::procrastinate_job_to_defer_v1
          FROM jsonb_array_elements(jobs) WITH ORDINALITY AS input(job, ord)
         ORDER BY ord));
END;
$$;

-- A claim whose reply was lost (connection cut after the commit) leaves jobs
-- 'doing' on a live worker that never started them. The worker calls this
-- after such a failure: its claimed jobs that it does not run go back to
-- 'todo', with no attempt counted.
CREATE FUNCTION pgjobs.release_unstarted_jobs(p_worker_id bigint, p_running bigint[])
    RETURNS SETOF bigint
    LANGUAGE sql
AS $$
    UPDATE procrastinate_jobs
       SET status = 'todo', worker_id = NULL
     WHERE worker_id = p_worker_id
       AND status = 'doing'
       AND id <> ALL(p_running)
    RETURNING id;
$$;
