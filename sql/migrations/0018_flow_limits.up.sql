-- Fleet-wide concurrency and rate limits (issue 19).

-- Fleet-wide concurrency and rate limits (README: Concurrency and rate
-- limits). A limit caps a task's jobs across every worker: at most `amount`
-- running at once (kind 'concurrency') or at most `amount` starts in any
-- sliding window of `period` (kind 'rate'), for the whole task (scope
-- 'task') or for each value of one of its arguments (scope 'key', e.g. per
-- tenant). The claim (pgjobs.fetch_jobs) enforces them; held-back jobs stay
-- 'todo'.

-- Declared in code (@app.task(concurrency_limit=..., rate_limit=...), synced
-- by every worker at its start) and/or set at runtime (pgjobs limits set):
-- the runtime value wins; a reset drops it. A row with neither is deleted.
CREATE TABLE pgjobs.task_limits (
    task_name text NOT NULL CHECK (char_length(task_name) BETWEEN 1 AND 128),
    scope text NOT NULL CHECK (scope IN ('task', 'key')),
    kind text NOT NULL CHECK (kind IN ('concurrency', 'rate')),
    -- scope 'key': the task argument whose value is the key.
    key_arg text CHECK (char_length(key_arg) BETWEEN 1 AND 128),
    declared_amount integer CHECK (declared_amount > 0),
    declared_period interval CHECK (declared_period > interval '0'),
    runtime_amount integer CHECK (runtime_amount > 0),
    runtime_period interval CHECK (runtime_period > interval '0'),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT session_user,
    PRIMARY KEY (task_name, scope, kind),
    CHECK ((scope = 'key') = (key_arg IS NOT NULL)),
    CHECK (kind = 'rate'
           OR (declared_period IS NULL AND runtime_period IS NULL)),
    CHECK (kind = 'concurrency'
           OR ((declared_amount IS NULL) = (declared_period IS NULL)
               AND (runtime_amount IS NULL) = (runtime_period IS NULL)))
);

-- The limits in force: the runtime value when set, else the declared one.
CREATE VIEW pgjobs.effective_task_limits AS
SELECT limits.task_name, limits.scope, limits.kind, limits.key_arg,
       coalesce(limits.runtime_amount, limits.declared_amount) AS amount,
       CASE WHEN limits.runtime_amount IS NOT NULL THEN limits.runtime_period
            ELSE limits.declared_period END AS period,
       limits.runtime_amount IS NOT NULL AS runtime
  FROM pgjobs.task_limits AS limits
 WHERE coalesce(limits.runtime_amount, limits.declared_amount) IS NOT NULL;

-- Set (p_amount) or reset (NULL) the runtime value of one limit; wakes idle
-- workers at commit (a raised limit lets held-back jobs start at once).
CREATE FUNCTION pgjobs.set_task_limit(
    p_task_name text, p_scope text, p_kind text, p_key_arg text,
    p_amount integer, p_period interval, p_updated_by text DEFAULT NULL
)
    RETURNS boolean
    LANGUAGE plpgsql
AS $$
BEGIN
    IF p_amount IS NOT NULL AND p_amount <= 0 THEN
        RAISE EXCEPTION 'a limit must be a positive number, got %', p_amount
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_amount IS NULL THEN
        UPDATE pgjobs.task_limits AS limits
           SET runtime_amount = NULL, runtime_period = NULL,
               updated_at = now(), updated_by = coalesce(p_updated_by, session_user)
         WHERE limits.task_name = p_task_name
           AND limits.scope = p_scope AND limits.kind = p_kind
           AND limits.runtime_amount IS NOT NULL;
        IF NOT FOUND THEN
            RETURN false;
        END IF;
        DELETE FROM pgjobs.task_limits AS limits
         WHERE limits.task_name = p_task_name
           AND limits.scope = p_scope AND limits.kind = p_kind
           AND limits.declared_amount IS NULL;
    ELSE
        INSERT INTO pgjobs.task_limits AS limits
               (task_name, scope, kind, key_arg, runtime_amount, runtime_period,
                updated_by)
        VALUES (p_task_name, p_scope, p_kind, p_key_arg, p_amount, p_period,
                coalesce(p_updated_by, session_user))
        ON CONFLICT (task_name, scope, kind) DO UPDATE
           SET runtime_amount = excluded.runtime_amount,
               runtime_period = excluded.runtime_period,
               key_arg = coalesce(excluded.key_arg, limits.key_arg),
               updated_at = now(), updated_by = excluded.updated_by;
    END IF;
    PERFORM pg_notify('procrastinate_any_queue_v1',
                      json_build_object('type', 'job_inserted', 'job_id', NULL)::text);
    RETURN true;
END;
$$;

-- Store the limits the code declares for p_tasks (jsonb array of
-- {task_name, scope, kind, key_arg, amount, period_s}); declared limits of
-- those tasks no longer declared are dropped (their runtime values stay).
CREATE FUNCTION pgjobs.sync_declared_limits(p_tasks text[], p_limits jsonb)
    RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    -- One sync at a time: workers starting together declare the same rows.
    PERFORM pg_advisory_xact_lock(hashtext('pgjobs.sync_declared_limits'));
    UPDATE pgjobs.task_limits AS limits
       SET declared_amount = NULL, declared_period = NULL
     WHERE limits.task_name = ANY(p_tasks)
       AND limits.declared_amount IS NOT NULL
       AND NOT EXISTS (
           SELECT FROM jsonb_to_recordset(p_limits)
                       AS d(task_name text, scope text, kind text)
            WHERE d.task_name = limits.task_name
              AND d.scope = limits.scope AND d.kind = limits.kind);
    DELETE FROM pgjobs.task_limits AS limits
     WHERE limits.task_name = ANY(p_tasks)
       AND limits.declared_amount IS NULL AND limits.runtime_amount IS NULL;
    INSERT INTO pgjobs.task_limits AS limits
           (task_name, scope, kind, key_arg, declared_amount, declared_period)
    SELECT d.task_name, d.scope, d.kind, d.key_arg, d.amount,
           CASE WHEN d.period_s IS NULL THEN NULL
                ELSE make_interval(secs => d.period_s) END
      FROM jsonb_to_recordset(p_limits)
           AS d(task_name text, scope text, kind text, key_arg text,
                amount integer, period_s double precision)
    ON CONFLICT (task_name, scope, kind) DO UPDATE
       SET declared_amount = excluded.declared_amount,
           declared_period = excluded.declared_period,
           key_arg = excluded.key_arg
     WHERE (limits.declared_amount, limits.declared_period, limits.key_arg)
           IS DISTINCT FROM
           (excluded.declared_amount, excluded.declared_period, excluded.key_arg);
END;
$$;


-- What the limits of pgjobs.task_limits count (README: Concurrency and rate
-- limits): the jobs running and the recent starts of each limited task and
-- key, kept by the claim (pgjobs.fetch_jobs); when a rate-held job may start
-- and why a job waits.

-- Jobs of a concurrency-limited task claimed and maybe still running: a
-- claim counts those still 'doing' (a claimed job counts from its claim) and
-- deletes the others. No foreign key: a deleted job's slot goes the same way.
CREATE TABLE pgjobs.limit_slots (
    job_id bigint PRIMARY KEY,
    task_name text NOT NULL,
    -- NULL: the task has no per-key limit.
    limit_key text
);
CREATE INDEX limit_slots_bucket_idx ON pgjobs.limit_slots (task_name, limit_key);

-- One row per start of a rate-limited job (at its claim), for the task
-- (limit_key NULL) and for its key; claims delete those older than the
-- window.
CREATE TABLE pgjobs.limit_starts (
    task_name text NOT NULL,
    limit_key text,
    started_at timestamptz NOT NULL
);
CREATE INDEX limit_starts_bucket_idx
    ON pgjobs.limit_starts (task_name, limit_key, started_at);

-- When the earliest rate-held job may start: the first start in a full
-- window, plus the window (NULL: no rate limit is full). Workers sleep
-- until then instead of polling.
CREATE FUNCTION pgjobs.limits_next_start()
    RETURNS timestamptz
    LANGUAGE sql
    STABLE
AS $$
    SELECT min(bucket.first_start + bucket.period)
      FROM (SELECT lim.period, lim.amount, count(*) AS starts,
                   min(start.started_at) AS first_start
              FROM pgjobs.effective_task_limits AS lim
              JOIN pgjobs.limit_starts AS start
                ON start.task_name = lim.task_name
               AND (lim.scope = 'key') = (start.limit_key IS NOT NULL)
             WHERE lim.kind = 'rate'
               AND start.started_at > clock_timestamp() - lim.period
             GROUP BY lim.task_name, lim.scope, start.limit_key, lim.period,
                      lim.amount) AS bucket
     WHERE bucket.starts >= bucket.amount;
$$;

-- Why a waiting job is held back by a limit (empty: it is not), with the
-- figures: one line per full limit (pgjobs jobs show: "why:").
CREATE FUNCTION pgjobs.job_limit_reasons(p_job_id bigint)
    RETURNS text[]
    LANGUAGE sql
    STABLE
AS $$
    SELECT coalesce(array_agg(reason.line ORDER BY reason.line), '{}')
      FROM procrastinate_jobs AS job
      JOIN pgjobs.effective_task_limits AS lim ON lim.task_name = job.task_name
      CROSS JOIN LATERAL (
          SELECT CASE WHEN lim.scope = 'key'
                      THEN coalesce(job.args ->> lim.key_arg, '') END AS key) AS k
      CROSS JOIN LATERAL (
          SELECT CASE lim.kind
                 WHEN 'concurrency' THEN
                     (SELECT count(*) FROM pgjobs.limit_slots AS slot
                        JOIN procrastinate_jobs AS doing
                          ON doing.id = slot.job_id AND doing.status = 'doing'
                       WHERE slot.task_name = lim.task_name
                         AND (k.key IS NULL OR slot.limit_key = k.key))
                 ELSE
                     (SELECT count(*) FROM pgjobs.limit_starts AS start
                       WHERE start.task_name = lim.task_name
                         AND start.limit_key IS NOT DISTINCT FROM k.key
                         AND start.started_at > clock_timestamp() - lim.period)
                 END AS used) AS usage
      CROSS JOIN LATERAL (
          SELECT CASE lim.kind
                 WHEN 'concurrency' THEN
                     format('concurrency limit: %s of %s running for %s%s',
                            usage.used, lim.amount, job.task_name,
                            CASE WHEN k.key IS NULL THEN ''
                                 ELSE format(' %s=%s', lim.key_arg, k.key) END)
                 ELSE
                     format('rate limit: %s of %s starts in the last %s s for %s%s',
                            usage.used, lim.amount,
                            trim_scale(extract(epoch FROM lim.period)),
                            job.task_name,
                            CASE WHEN k.key IS NULL THEN ''
                                 ELSE format(' %s=%s', lim.key_arg, k.key) END)
                 END AS line) AS reason
     WHERE job.id = p_job_id
       AND job.status = 'todo'
       AND usage.used >= lim.amount;
$$;

-- A task's waiting jobs by rank: while jobs of limited tasks wait, the claim
-- reads each task's jobs from here (see below), so held-back jobs of one
-- task are never walked by the claims of the others.
-- Priority negated (as bigint: -(-2^31) overflows an integer) so that a row
-- comparison can start a walk at a job's place in the claim's order.
CREATE INDEX pgjobs_jobs_task_rank_idx
    ON procrastinate_jobs (task_name, (-priority::bigint), id)
    WHERE status = 'todo';

-- As 0005 grants pgjobs' tables and functions to the worker role.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_worker') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE
            ON pgjobs.task_limits, pgjobs.limit_slots, pgjobs.limit_starts,
               pgjobs.effective_task_limits
            TO pgjobs_worker;
        GRANT EXECUTE ON FUNCTION
            pgjobs.set_task_limit(text, text, text, text, integer, interval, text),
            pgjobs.sync_declared_limits(text[], jsonb),
            pgjobs.limits_next_start(), pgjobs.job_limit_reasons(bigint)
            TO pgjobs_worker;
    END IF;
END;
$$;

-- The claim enforces them (see sql/schema/50_hot_path.sql).
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
                       SET status = 'doing', worker_id = p_worker_id
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
                                 ORDER BY todo.task_name, -todo.priority::bigint, todo.id
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
