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
