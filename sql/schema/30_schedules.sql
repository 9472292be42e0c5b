-- Schedules: runtime schedules stored in Postgres, the code-declared periodic
-- tasks workers register, run-once-after-start claims, and periodic health.
-- Cron arithmetic happens in Python (pgjobs.cron); the database keeps the
-- state, and every claim is one statement so exactly one worker wins it.

-- Runtime schedules (pgjobs.schedules.add_schedule, `pgjobs schedules add`).
CREATE TABLE pgjobs.schedules (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name <> '' AND length(name) <= 128),
    task_name text NOT NULL,
    cron text,
    interval_seconds integer CHECK (interval_seconds > 0),
    args jsonb NOT NULL DEFAULT '{}',
    queue_name text NOT NULL DEFAULT 'default',
    priority integer NOT NULL DEFAULT 0,
    queueing_lock text,
    paused boolean NOT NULL DEFAULT false,
    missed_runs text NOT NULL DEFAULT 'skip'
        CHECK (missed_runs IN ('skip', 'once', 'all')),
    max_catch_up integer NOT NULL DEFAULT 100
        CHECK (max_catch_up BETWEEN 1 AND 10000),
    -- Longest normal gap between two ticks, computed from cron/interval.
    expected_interval interval NOT NULL CHECK (expected_interval > interval '0'),
    expected_interval_override interval
        CHECK (expected_interval_override > interval '0'),
    -- The next tick to enqueue; workers claim it by compare-and-set.
    next_run_at timestamptz NOT NULL,
    -- Since when the schedule runs as it is now (created, resumed, changed):
    -- the overdue clock starts here when no run succeeded since.
    active_since timestamptz NOT NULL DEFAULT now(),
    last_enqueued_at timestamptz,
    last_job_id bigint,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_cron_or_interval
        CHECK ((cron IS NULL) <> (interval_seconds IS NULL))
);
CREATE INDEX schedules_due_idx ON pgjobs.schedules (next_run_at) WHERE NOT paused;

-- One row per enqueued tick (the last 100 per schedule are kept). The
-- primary key is the guard that makes a tick enqueue at most one job.
CREATE TABLE pgjobs.schedule_runs (
    schedule_id bigint NOT NULL REFERENCES pgjobs.schedules ON DELETE CASCADE,
    tick_at timestamptz NOT NULL,
    trigger text NOT NULL CHECK (trigger IN ('tick', 'catch_up', 'manual')),
    -- NULL when the schedule's queueing lock was held by a waiting job.
    job_id bigint,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    status text CHECK (status IN ('succeeded', 'failed')),
    finished_at timestamptz,
    PRIMARY KEY (schedule_id, tick_at)
);
CREATE INDEX schedule_runs_job_id_idx ON pgjobs.schedule_runs (job_id)
    WHERE job_id IS NOT NULL;

-- Periodic tasks declared in code (@app.periodic), registered by each worker
-- at start so their expected interval is known in SQL.
CREATE TABLE pgjobs.periodic_tasks (
    name text PRIMARY KEY,
    task_name text NOT NULL,
    periodic_id text NOT NULL DEFAULT '',
    cron text NOT NULL,
    expected_interval interval NOT NULL CHECK (expected_interval > interval '0'),
    expected_interval_override interval
        CHECK (expected_interval_override > interval '0'),
    -- First registration, or the last change of its cron.
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    last_success_at timestamptz,
    last_failure_at timestamptz,
    last_error text,
    UNIQUE (task_name, periodic_id)
);

-- Run-once-after-start tasks: one row per task name and deployment.
CREATE TABLE pgjobs.startup_runs (
    name text PRIMARY KEY,
    deployment_id text,
    -- Workers that took part in the current deployment (claimer + joiners).
    worker_ids bigint[] NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    job_id bigint
);

-- Enqueue the given ticks of a due schedule, if it is still due at
-- p_expected_next_run_at (compare-and-set: exactly one caller wins), and move
-- it to p_next_run_at. Returns the ticks enqueued by this call.
CREATE FUNCTION pgjobs.claim_schedule_ticks(
    p_schedule_id bigint,
    p_expected_next_run_at timestamptz,
    p_ticks timestamptz[],
    p_triggers text[],
    p_next_run_at timestamptz
)
    RETURNS TABLE (tick_at timestamptz, job_id bigint, trigger text)
    LANGUAGE plpgsql
AS $$
DECLARE
    _schedule pgjobs.schedules;
    _job_id bigint;
    _enqueued integer := 0;
BEGIN
    UPDATE pgjobs.schedules AS s
       SET next_run_at = p_next_run_at
     WHERE s.id = p_schedule_id
       AND NOT s.paused
       AND s.next_run_at = p_expected_next_run_at
    RETURNING s.* INTO _schedule;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_ticks, 1), 0) LOOP
        INSERT INTO pgjobs.schedule_runs AS r (schedule_id, tick_at, trigger)
        VALUES (p_schedule_id, p_ticks[i], p_triggers[i])
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            CONTINUE;
        END IF;
        _job_id := (pgjobs.defer_jobs(ARRAY[ROW(
            _schedule.queue_name, _schedule.task_name, _schedule.priority,
            NULL, _schedule.queueing_lock, _schedule.args, NULL
        )::procrastinate_job_to_defer_v1]))[1];
        UPDATE pgjobs.schedule_runs AS r SET job_id = _job_id
         WHERE r.schedule_id = p_schedule_id AND r.tick_at = p_ticks[i];
        _enqueued := _enqueued + 1;
        tick_at := p_ticks[i];
        job_id := _job_id;
        trigger := p_triggers[i];
        RETURN NEXT;
    END LOOP;
    IF _enqueued > 0 THEN
        UPDATE pgjobs.schedules AS s
           SET last_enqueued_at = now(),
               last_job_id = coalesce(_job_id, s.last_job_id)
         WHERE s.id = p_schedule_id;
        PERFORM pgjobs.trim_schedule_runs(p_schedule_id);
    END IF;
END;
$$;

-- Enqueue one run of a schedule now, whatever its state (run-now).
CREATE FUNCTION pgjobs.run_schedule_now(p_name text)
    RETURNS TABLE (schedule_id bigint, tick_at timestamptz, job_id bigint)
    LANGUAGE plpgsql
AS $$
DECLARE
    _schedule pgjobs.schedules;
    _tick timestamptz := clock_timestamp();
    _job_id bigint;
BEGIN
    SELECT * INTO _schedule FROM pgjobs.schedules AS s WHERE s.name = p_name;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    _job_id := (pgjobs.defer_jobs(ARRAY[ROW(
        _schedule.queue_name, _schedule.task_name, _schedule.priority,
        NULL, _schedule.queueing_lock, _schedule.args, NULL
    )::procrastinate_job_to_defer_v1]))[1];
    INSERT INTO pgjobs.schedule_runs (schedule_id, tick_at, trigger, job_id)
    VALUES (_schedule.id, _tick, 'manual', _job_id);
    UPDATE pgjobs.schedules AS s
       SET last_enqueued_at = now(), last_job_id = coalesce(_job_id, s.last_job_id)
     WHERE s.id = _schedule.id;
    PERFORM pgjobs.trim_schedule_runs(_schedule.id);
    schedule_id := _schedule.id;
    tick_at := _tick;
    job_id := _job_id;
    RETURN NEXT;
END;
$$;

-- Keep the 100 most recent runs of a schedule.
CREATE FUNCTION pgjobs.trim_schedule_runs(p_schedule_id bigint)
    RETURNS void
    LANGUAGE sql
AS $$
    DELETE FROM pgjobs.schedule_runs AS r
     WHERE r.schedule_id = p_schedule_id
       AND r.tick_at < (SELECT kept.tick_at FROM pgjobs.schedule_runs AS kept
                         WHERE kept.schedule_id = p_schedule_id
                         ORDER BY kept.tick_at DESC OFFSET 99 LIMIT 1);
$$;

-- A finished job of a schedule or of a code-declared periodic task records
-- its outcome there, in the statement that finishes it: health survives the
-- pruning of old jobs. Periodic jobs deferred by procrastinate carry a
-- "timestamp" argument; that and the task name identify them.
-- pgjobs.finish_jobs calls this for its batch; the trigger below for every
-- other statement.
CREATE FUNCTION pgjobs.record_job_outcome(
    p_job_id bigint,
    p_status procrastinate_job_status,
    p_task_name text,
    p_periodic boolean
)
    RETURNS void
    LANGUAGE plpgsql
AS $$
DECLARE
    _failed boolean := p_status = 'failed';
    _error text;
BEGIN
    IF _failed THEN
        SELECT e.error_type || ': ' || e.error_message INTO _error
          FROM pgjobs.job_errors AS e
         WHERE e.job_id = p_job_id
         ORDER BY e.id DESC
         LIMIT 1;
        _error := coalesce(_error, 'job failed');
    END IF;
    WITH finished AS (
        UPDATE pgjobs.schedule_runs AS r
           SET status = p_status::text, finished_at = now()
         WHERE r.job_id = p_job_id
        RETURNING r.schedule_id
    )
    UPDATE pgjobs.schedules AS s
       SET last_success_at = CASE WHEN _failed THEN s.last_success_at ELSE now() END,
           last_failure_at = CASE WHEN _failed THEN now() ELSE s.last_failure_at END,
           last_error = CASE WHEN _failed THEN _error ELSE s.last_error END
      FROM finished
     WHERE s.id = finished.schedule_id;
    IF p_periodic THEN
        UPDATE pgjobs.periodic_tasks AS p
           SET last_success_at = CASE WHEN _failed THEN p.last_success_at ELSE now() END,
               last_failure_at = CASE WHEN _failed THEN now() ELSE p.last_failure_at END,
               last_error = CASE WHEN _failed THEN _error ELSE p.last_error END
         WHERE p.task_name = p_task_name;
    END IF;
END;
$$;

CREATE FUNCTION pgjobs.record_periodic_outcome()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pgjobs.record_job_outcome(
        NEW.id, NEW.status, NEW.task_name, NEW.args ? 'timestamp');
    RETURN NULL;
END;
$$;

CREATE TRIGGER pgjobs_record_periodic_outcome
    AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed') AND OLD.status <> NEW.status
          AND current_setting('pgjobs.batch_events', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION pgjobs.record_periodic_outcome();

-- procrastinate_defer_periodic_job_v2 keeps one tick per periodic task (it
-- deletes the older ones), so a worker whose deferrer lags behind another's
-- could defer a tick again once the newer tick has replaced it: the tick
-- then runs twice. A tick no newer than one already recorded is skipped
-- here (the insert writes nothing, and no job is deferred for it).
CREATE FUNCTION pgjobs.skip_past_periodic_tick()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF EXISTS (SELECT 1
                 FROM procrastinate_periodic_defers AS d
                WHERE d.task_name = NEW.task_name
                  AND d.periodic_id = NEW.periodic_id
                  AND d.defer_timestamp >= NEW.defer_timestamp) THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER pgjobs_skip_past_periodic_tick
    BEFORE INSERT ON procrastinate_periodic_defers
    FOR EACH ROW
    EXECUTE FUNCTION pgjobs.skip_past_periodic_tick();

-- One row per runtime schedule and per code-declared periodic task.
-- overdue: no success within expected_interval + grace since the later of the
-- last success and the time the schedule became active, where grace is
-- greatest(60 s, 10% of expected_interval). Paused schedules are never overdue.
CREATE VIEW pgjobs.periodic_health AS
WITH periodic AS (
    SELECT s.name, s.task_name, 'schedule'::text AS kind,
           coalesce(s.expected_interval_override, s.expected_interval)
               AS expected_interval,
           s.last_enqueued_at, s.last_success_at, s.last_failure_at, s.last_error,
           s.paused,
           greatest(s.last_success_at, s.active_since) AS since
      FROM pgjobs.schedules AS s
    UNION ALL
    SELECT p.name, p.task_name, 'code'::text,
           coalesce(p.expected_interval_override, p.expected_interval),
           (SELECT to_timestamp(max(d.defer_timestamp))
              FROM procrastinate_periodic_defers AS d
             WHERE d.task_name = p.task_name AND d.periodic_id = p.periodic_id),
           p.last_success_at, p.last_failure_at, p.last_error,
           false,
           greatest(p.last_success_at, p.registered_at)
      FROM pgjobs.periodic_tasks AS p
    UNION ALL
    -- Deferred by a worker that did not register them (no expected interval).
    SELECT coalesce(nullif(d.periodic_id, ''), d.task_name), d.task_name, 'code',
           NULL, to_timestamp(max(d.defer_timestamp)), NULL, NULL, NULL, false, NULL
      FROM procrastinate_periodic_defers AS d
     WHERE NOT EXISTS (SELECT FROM pgjobs.periodic_tasks AS p
                        WHERE p.task_name = d.task_name
                          AND p.periodic_id = d.periodic_id)
     GROUP BY d.task_name, d.periodic_id
)
SELECT name, task_name, expected_interval, last_enqueued_at, last_success_at,
       last_failure_at, last_error,
       coalesce(NOT paused
                AND (SELECT pgjobs.as_of()) > since + expected_interval
                            + greatest(interval '60 seconds', expected_interval / 10),
                false) AS overdue,
       kind, paused,
       since + expected_interval
           + greatest(interval '60 seconds', expected_interval / 10) AS overdue_at
  FROM periodic;
