-- Walked by pgjobs.fetch_jobs: two index probes per candidate job that has a
-- lock (procrastinate's anti-join form scans every waiting job: 19 s at 50,000).
CREATE INDEX pgjobs_jobs_lock_rank_idx
    ON procrastinate_jobs (lock, priority DESC, id)
    WHERE status = 'todo' AND lock IS NOT NULL;

-- A task's waiting jobs by rank: while jobs of limited tasks wait, the claim
-- reads each task's jobs from here (see below), so held-back jobs of one
-- task are never walked by the claims of the others.
-- Priority negated (as bigint: -(-2^31) overflows an integer) so that a row
-- comparison can start a walk at a job's place in the claim's order.
CREATE INDEX pgjobs_jobs_task_rank_idx
    ON procrastinate_jobs (task_name, (-priority::bigint), id)
    WHERE status = 'todo';

-- Claim up to p_limit jobs: procrastinate_fetch_job_v2's candidates (todo,
-- queue filter, scheduled_at reached, a job with a lock only when no job of
-- that lock runs and no earlier or higher-priority job of that lock waits),
-- its order (priority DESC, id ASC) and its SKIP LOCKED claim, plus the
-- 'started' events (the jobs' started_at, in the claiming update: no event
-- row, sql/schema/05_job_events.sql). At most one job per lock is ever a candidate, so a
-- batch never holds two jobs of one lock.
-- Flow control (sql/schema/30_paused_queues.sql, 31_job_deadlines.sql):
-- jobs of a paused queue are no candidates (the queue filter loses the
-- paused queues, and a claim left with none returns at once; a claim of
-- every queue skips their jobs as it walks), and neither is a job whose start-by deadline has passed: a claim
-- that finds a deadline due first expires up to 100 such jobs. Nothing
-- paused and no deadline due: two index probes per claim.
-- Concurrency and rate limits (sql/schema/32_task_limits.sql,
-- 33_limit_usage.sql): with none in force, one probe of pgjobs.task_limits
-- and the claim as before; else each limited task's jobs are claimed within
-- what its limits leave, under a lock of its limit rows, and the other
-- tasks' jobs as before (or, while limited jobs wait, from the per-task
-- index so as not to walk them).
-- p_start: how many of them (the first, in that order) start now and get
-- their 'started' event (started_at); NULL: all. The others are prefetched
-- (see pgjobs.job_worker): 'doing' without a 'started' event until the
-- worker starts them (pgjobs.finish_jobs writes it then), which is how a
-- rescue tells a job that never started from one that was running.
-- The starts are counted in pgjobs.task_rollups with the 'started' events,
-- one grouped upsert per claim statement. The claimed ids are locked by one
-- statement and claimed by the next, through an array in the claim's order
-- (the rank that says which start).
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
    -- Where the per-key walk is: the place of the last key's first job.
    _rank bigint;
    _at bigint;
    _held boolean := false;
    -- The jobs a statement claims, in the claim's order.
    _ids bigint[];
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
            _rank := -9223372036854775808;
            _at := -1;
            -- Per key: keys in the order of their first waiting job, each given
            -- what its own limits leave, so a full key never holds back the
            -- others; each search for the next key, and the claim of a key's
            -- jobs, starts at the last key's first job (a row comparison on
            -- the index), so a claim walks the held-back jobs once. No
            -- per-key limit: one pass with _key NULL.
            WHILE _budget > 0 LOOP
                _key := NULL;
                _key_budget := _budget;
                IF _lim.key_arg IS NOT NULL THEN
                    SELECT coalesce(todo.args ->> _lim.key_arg, ''),
                           -todo.priority::bigint, todo.id
                      INTO _key, _rank, _at
                      FROM procrastinate_jobs AS todo
                     WHERE (todo.task_name, -todo.priority::bigint, todo.id)
                           > (_lim.task_name, _rank, _at)
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
                     ORDER BY todo.task_name, -todo.priority::bigint, todo.id
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
                       SET status = 'doing', worker_id = p_worker_id, started_at = now()
                     WHERE jobs.id = ANY(ARRAY(
                        SELECT todo.id
                          FROM procrastinate_jobs AS todo
                         WHERE (todo.task_name, -todo.priority::bigint, todo.id)
                               >= (_lim.task_name, _rank, _at)
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
                         ORDER BY todo.task_name, -todo.priority::bigint, todo.id
                         LIMIT _key_budget
                           FOR UPDATE OF todo SKIP LOCKED))
                    RETURNING jobs.*
                ), rolled AS (
                    -- Their starts and waits (since each job's last ready event) in
                    -- pgjobs.task_rollups, one row per task.
                    INSERT INTO pgjobs.task_rollups AS rollup
                           (minute, task_name, bucket, shard, started, waited, wait_s)
                    SELECT date_trunc('minute', now()), claimed.task_name, -2, pg_backend_pid() % 4,
                           count(*), count(ready.s), coalesce(sum(ready.s), 0)
                      FROM claimed
                     CROSS JOIN LATERAL (
                           SELECT extract(epoch FROM now() - greatest(max(r.at) FILTER (
                                WHERE r.type IN ('deferred', 'deferred_for_retry', 'retried',
                                                 'scheduled')
                                  AND r.at <= now()), claimed.deferred_at))::double precision AS s
                             FROM pgjobs.event_log AS r
                            WHERE r.job_id = claimed.id) AS ready
                     WHERE claimed.started_at IS NOT NULL
                     GROUP BY claimed.task_name
                     ORDER BY claimed.task_name
                    ON CONFLICT (minute, task_name, bucket, shard) DO UPDATE
                       SET started = rollup.started + excluded.started,
                           waited = rollup.waited + excluded.waited,
                           wait_s = rollup.wait_s + excluded.wait_s
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
            _ids := ARRAY(
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
                                 ORDER BY todo.task_name, -todo.priority::bigint, todo.id
                                 LIMIT greatest(p_limit, 0)) AS candidate
                             ORDER BY candidate.priority DESC, candidate.id ASC
                             LIMIT greatest(p_limit, 0)))
                       AND todo.status = 'todo'
                       FOR UPDATE OF todo SKIP LOCKED);
            -- In the claim's order (the lock above returns them unordered).
            _ids := ARRAY(SELECT ranked.id
                            FROM procrastinate_jobs AS ranked
                           WHERE ranked.id = ANY(_ids)
                           ORDER BY ranked.priority DESC, ranked.id ASC);
            RETURN QUERY
            WITH claimed AS (
                UPDATE procrastinate_jobs AS jobs
                   SET status = 'doing', worker_id = p_worker_id,
                       started_at = CASE WHEN p_start IS NULL
                                           OR array_position(_ids, jobs.id) <= p_start
                                         THEN now() END
                 WHERE jobs.id = ANY(_ids)
                RETURNING jobs.*
            ), rolled AS (
                -- Their starts and waits (since each job's last ready event) in
                -- pgjobs.task_rollups, one row per task.
                INSERT INTO pgjobs.task_rollups AS rollup
                       (minute, task_name, bucket, shard, started, waited, wait_s)
                SELECT date_trunc('minute', now()), claimed.task_name, -2, pg_backend_pid() % 4,
                       count(*), count(ready.s), coalesce(sum(ready.s), 0)
                  FROM claimed
                 CROSS JOIN LATERAL (
                       SELECT extract(epoch FROM now() - greatest(max(r.at) FILTER (
                            WHERE r.type IN ('deferred', 'deferred_for_retry', 'retried',
                                             'scheduled')
                              AND r.at <= now()), claimed.deferred_at))::double precision AS s
                         FROM pgjobs.event_log AS r
                        WHERE r.job_id = claimed.id) AS ready
                 WHERE claimed.started_at IS NOT NULL
                 GROUP BY claimed.task_name
                 ORDER BY claimed.task_name
                ON CONFLICT (minute, task_name, bucket, shard) DO UPDATE
                   SET started = rollup.started + excluded.started,
                       waited = rollup.waited + excluded.waited,
                       wait_s = rollup.wait_s + excluded.wait_s
            )
            SELECT * FROM claimed;
            PERFORM set_config('pgjobs.batch_events', 'off', true);
            RETURN;
        END IF;
    END IF;
    _ids := ARRAY(
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
               FOR UPDATE OF todo SKIP LOCKED);
    RETURN QUERY
    WITH claimed AS (
        UPDATE procrastinate_jobs AS jobs
           SET status = 'doing', worker_id = p_worker_id,
               -- The first p_start in the claim's order start now: their
               -- 'started' event (sql/schema/05_job_events.sql).
               started_at = CASE WHEN p_start IS NULL
                                   OR array_position(_ids, jobs.id) <= p_start
                                 THEN now() END
         WHERE jobs.id = ANY(_ids)
        RETURNING jobs.*
    ), rolled AS (
        -- Their starts and waits (since each job's last ready event) in
        -- pgjobs.task_rollups, one row per task.
        INSERT INTO pgjobs.task_rollups AS rollup
               (minute, task_name, bucket, shard, started, waited, wait_s)
        SELECT date_trunc('minute', now()), claimed.task_name, -2, pg_backend_pid() % 4,
               count(*), count(ready.s), coalesce(sum(ready.s), 0)
          FROM claimed
         CROSS JOIN LATERAL (
               SELECT extract(epoch FROM now() - greatest(max(r.at) FILTER (
                    WHERE r.type IN ('deferred', 'deferred_for_retry', 'retried',
                                     'scheduled')
                      AND r.at <= now()), claimed.deferred_at))::double precision AS s
                 FROM pgjobs.event_log AS r
                WHERE r.job_id = claimed.id) AS ready
         WHERE claimed.started_at IS NOT NULL
         GROUP BY claimed.task_name
         ORDER BY claimed.task_name
        ON CONFLICT (minute, task_name, bucket, shard) DO UPDATE
           SET started = rollup.started + excluded.started,
               waited = rollup.waited + excluded.waited,
               wait_s = rollup.wait_s + excluded.wait_s
    )
    SELECT * FROM claimed;
    PERFORM set_config('pgjobs.batch_events', 'off', true);
END;
$$;
