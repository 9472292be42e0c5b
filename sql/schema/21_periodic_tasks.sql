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
