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

