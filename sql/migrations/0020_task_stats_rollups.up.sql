-- pgjobs.task_stats from per-task, per-minute rollups kept by the outcome
-- writes (issue 18): what it costs no longer grows with the attempts in the
-- window. See sql/schema/43_task_rollups.sql and 43_task_stats.sql.

-- What pgjobs.task_stats reads: per task and minute, the attempts that
-- started and ended and the jobs that expired, counted when their event is
-- written (aggregating procrastinate_events over the window on every read
-- took ~1 s per 100,000 attempts). Run times go into log-scale buckets, so
-- the view's percentiles are within 5% of the exact ones (see
-- pgjobs.run_time_bucket); counts, means and maxima are exact.
-- Written by the worker's batch functions (pgjobs.fetch_jobs,
-- pgjobs.finish_jobs: one grouped upsert per statement) and by
-- pgjobs.expire_jobs; every other event that counts (retries, failures,
-- aborts, interruptions, procrastinate's own functions, events inserted by
-- hand) goes through pgjobs.roll_up_event, a row trigger the batch
-- functions skip.
-- A row per (minute, task, bucket, shard): bucket -3 expirations, -2
-- starts (with their waits), -1 ended attempts (outcomes, run time sum,
-- shortest and longest); 0 and up the run-time histogram: how many ended
-- attempts had a run time in that bucket, per 10 minutes (minute is the
-- start of the 10-minute block, pgjobs.run_time_block), so that the view
-- reads at most 7 blocks per task and bucket for a 1-hour window instead
-- of 60 minutes. shard: the writer's backend pid modulo 4, so that
-- concurrent workers rarely wait for one another's row lock; the view sums
-- the shards. Within a transaction rows are written in increasing bucket
-- order (expirations, starts, ends), and within one statement by (bucket,
-- task), so two batch functions never deadlock on them (the trigger writes
-- one event's rows at a time).
-- Pruned by every worker (pgjobs.worker.stats_pruning) and by pgjobs prune
-- (older than 7 days by default), not with the jobs: a deleted job's
-- attempts still count.
CREATE TABLE pgjobs.task_rollups (
    minute timestamptz NOT NULL,
    task_name text NOT NULL,
    bucket smallint NOT NULL,
    shard smallint NOT NULL,
    started bigint NOT NULL DEFAULT 0,
    -- Starts with a ready time (a 'deferred', 'deferred_for_retry',
    -- 'retried' or 'scheduled' event before them), and their waits' sum.
    waited bigint NOT NULL DEFAULT 0,
    wait_s double precision NOT NULL DEFAULT 0,
    runs bigint NOT NULL DEFAULT 0,
    succeeded bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    retried bigint NOT NULL DEFAULT 0,
    aborted bigint NOT NULL DEFAULT 0,
    interrupted bigint NOT NULL DEFAULT 0,
    expired bigint NOT NULL DEFAULT 0,
    -- Ended attempts with a run time (a 'started' event before them).
    timed bigint NOT NULL DEFAULT 0,
    run_s double precision NOT NULL DEFAULT 0,
    min_run_s double precision,
    max_run_s double precision,
    PRIMARY KEY (minute, task_name, bucket, shard)
) WITH (fillfactor = 70);
-- fillfactor: every batch updates its rows in place (HOT: no indexed
-- column changes).

-- The bucket of a run time: 0 below a microsecond, then buckets 10% wide
-- (bucket b >= 1 holds [1e-6 * 1.1^(b-1), 1e-6 * 1.1^b) seconds); -1 for
-- none. The view takes each bucket for its geometric middle
-- (pgjobs.run_time_bucket_s): at most 4.9% off any run time in it.
CREATE FUNCTION pgjobs.run_time_bucket(p_run_s double precision)
    RETURNS smallint
    LANGUAGE sql
    IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
               WHEN p_run_s IS NULL THEN -1
               WHEN p_run_s < 1e-6 THEN 0
               ELSE least(1 + floor(ln(p_run_s * 1e6) / ln(1.1)), 32767)
           END::smallint;
$$;

-- The 10-minute block of the run-time histogram rows.
CREATE FUNCTION pgjobs.run_time_block(p_at timestamptz)
    RETURNS timestamptz
    LANGUAGE sql
    IMMUTABLE PARALLEL SAFE
AS $$
    SELECT date_bin(interval '10 minutes', p_at, timestamptz '2000-01-01 00:00:00+00');
$$;

CREATE FUNCTION pgjobs.run_time_bucket_s(p_bucket smallint)
    RETURNS double precision
    LANGUAGE sql
    IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN p_bucket <= 0 THEN 0::double precision
                ELSE 1e-6 * power(1.1::double precision, p_bucket - 0.5)
           END;
$$;

-- One event's share of the rollups, as pgjobs.task_stats counted it from
-- procrastinate_events before: a 'started' event's wait (since the job's
-- last ready event), an end event's run time (since the job's last
-- 'started' event) and outcome; a 'deferred_for_retry' event with an
-- 'interruption' row of the same transaction in pgjobs.job_errors is an
-- interruption (pgjobs.interrupt_job writes that row first).
CREATE FUNCTION pgjobs.roll_up_event()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    _task text;
    _kind text := NEW.type::text;
    _s double precision;
BEGIN
    SELECT job.task_name INTO _task
      FROM procrastinate_jobs AS job
     WHERE job.id = NEW.job_id;
    IF _kind = 'started' THEN
        -- By job_id alone, the rest filtered (see pgjobs.finish_jobs).
        SELECT extract(epoch FROM NEW.at - max(ready.at) FILTER (
                   WHERE ready.type IN ('deferred', 'deferred_for_retry', 'retried',
                                        'scheduled')
                     AND ready.at <= NEW.at))::double precision INTO _s
          FROM procrastinate_events AS ready
         WHERE ready.job_id = NEW.job_id;
        INSERT INTO pgjobs.task_rollups AS rollup
               (minute, task_name, bucket, shard, started, waited, wait_s)
        VALUES (date_trunc('minute', NEW.at), _task, -2, pg_backend_pid() % 4,
                1, (_s IS NOT NULL)::integer, coalesce(_s, 0))
        ON CONFLICT (minute, task_name, bucket, shard) DO UPDATE
           SET started = rollup.started + 1,
               waited = rollup.waited + excluded.waited,
               wait_s = rollup.wait_s + excluded.wait_s;
        RETURN NULL;
    END IF;
    IF _kind = 'deferred_for_retry' AND EXISTS (
           SELECT FROM pgjobs.job_errors AS interruption
            WHERE interruption.job_id = NEW.job_id
              AND interruption.kind = 'interruption'
              AND interruption.failed_at = NEW.at) THEN
        _kind := 'interrupted';
    END IF;
    SELECT extract(epoch FROM NEW.at - max(started.at) FILTER (
               WHERE started.type = 'started' AND started.at <= NEW.at))::double precision
           INTO _s
      FROM procrastinate_events AS started
     WHERE started.job_id = NEW.job_id;
    INSERT INTO pgjobs.task_rollups AS rollup
           (minute, task_name, bucket, shard, runs, succeeded, failed, retried,
            aborted, interrupted, timed, run_s, min_run_s, max_run_s)
    VALUES (date_trunc('minute', NEW.at), _task, -1, pg_backend_pid() % 4, 1,
            (_kind = 'succeeded')::integer, (_kind = 'failed')::integer,
            (_kind = 'deferred_for_retry')::integer, (_kind = 'aborted')::integer,
            (_kind = 'interrupted')::integer, (_s IS NOT NULL)::integer,
            coalesce(_s, 0), _s, _s)
    ON CONFLICT (minute, task_name, bucket, shard) DO UPDATE
       SET runs = rollup.runs + 1,
           succeeded = rollup.succeeded + excluded.succeeded,
           failed = rollup.failed + excluded.failed,
           retried = rollup.retried + excluded.retried,
           aborted = rollup.aborted + excluded.aborted,
           interrupted = rollup.interrupted + excluded.interrupted,
           timed = rollup.timed + excluded.timed,
           run_s = rollup.run_s + excluded.run_s,
           min_run_s = least(rollup.min_run_s, excluded.min_run_s),
           max_run_s = greatest(rollup.max_run_s, excluded.max_run_s);
    IF _s IS NOT NULL THEN
        INSERT INTO pgjobs.task_rollups AS rollup (minute, task_name, bucket, shard, runs)
        VALUES (pgjobs.run_time_block(NEW.at), _task, pgjobs.run_time_bucket(_s),
                pg_backend_pid() % 4, 1)
        ON CONFLICT (minute, task_name, bucket, shard) DO UPDATE
           SET runs = rollup.runs + 1;
    END IF;
    RETURN NULL;
END;
$$;

-- Skipped while pgjobs.batch_events is on: the batch functions write their
-- own rollups, one upsert per statement (a trigger call per event cost the
-- worker about a quarter of its throughput).
CREATE TRIGGER pgjobs_roll_up_event
    AFTER INSERT ON procrastinate_events
    FOR EACH ROW
    WHEN (current_setting('pgjobs.batch_events', true) IS DISTINCT FROM 'on'
          AND NEW.type IN ('started', 'succeeded', 'failed', 'deferred_for_retry',
                           'aborted')
          AND NEW.at IS NOT NULL)
    EXECUTE FUNCTION pgjobs.roll_up_event();

CREATE OR REPLACE VIEW pgjobs.task_stats AS
WITH totals AS (
    SELECT rollup.task_name,
           sum(rollup.started)::bigint AS started,
           sum(rollup.waited) AS waited,
           sum(rollup.wait_s) AS wait_s,
           sum(rollup.runs)::bigint AS runs,
           sum(rollup.succeeded)::bigint AS succeeded,
           sum(rollup.failed)::bigint AS failed,
           sum(rollup.retried)::bigint AS retried,
           sum(rollup.aborted)::bigint AS aborted,
           sum(rollup.interrupted)::bigint AS interrupted,
           sum(rollup.expired)::bigint AS expired,
           sum(rollup.timed) AS timed,
           sum(rollup.run_s) AS run_s,
           min(rollup.min_run_s) AS min_run_s,
           max(rollup.max_run_s) AS max_run_s
      FROM pgjobs.task_rollups AS rollup
     -- A plain stable expression, not a subquery: the planner estimates the
     -- window from it (a subquery's value is unknown at plan time, taken
     -- for a third of the table: a scan of every row kept, 0.7 s with a
     -- month of rollups), and the index scan computes it once.
     WHERE rollup.minute >= date_trunc(
               'minute', now() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval)
       AND rollup.bucket < 0
     GROUP BY rollup.task_name
), histogram AS (
    -- Per task and bucket, the ranks (0-based, in run-time order) it holds,
    -- [below, upto), and the task's number of runs in the histogram.
    SELECT buckets.task_name, buckets.bucket,
           sum(buckets.n) OVER ranks - buckets.n AS below,
           sum(buckets.n) OVER ranks AS upto,
           sum(buckets.n) OVER (PARTITION BY buckets.task_name) AS n
      FROM (SELECT rollup.task_name, rollup.bucket, sum(rollup.runs) AS n
              FROM pgjobs.task_rollups AS rollup
             WHERE rollup.minute >= pgjobs.run_time_block(
                       now() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval)
               AND rollup.bucket >= 0
             GROUP BY rollup.task_name, rollup.bucket) AS buckets
    WINDOW ranks AS (PARTITION BY buckets.task_name ORDER BY buckets.bucket)
), ranks AS (
    -- percentile_cont's position of each percentile: between ranks
    -- floor(h) and ceil(h).
    SELECT counted.task_name, wanted.i, wanted.p * (counted.n - 1) AS h
      FROM (SELECT DISTINCT histogram.task_name, histogram.n FROM histogram) AS counted
     CROSS JOIN unnest(ARRAY[0.5, 0.95, 0.99]) WITH ORDINALITY AS wanted(p, i)
), percentiles AS (
    SELECT ranks.task_name,
           array_agg(ranks.lo_s + (ranks.h - floor(ranks.h)) * (ranks.hi_s - ranks.lo_s)
                     ORDER BY ranks.i) AS estimates
      FROM (SELECT ranks.task_name, ranks.i, ranks.h,
                   max(pgjobs.run_time_bucket_s(histogram.bucket))
                       FILTER (WHERE floor(ranks.h) >= histogram.below
                                 AND floor(ranks.h) < histogram.upto) AS lo_s,
                   max(pgjobs.run_time_bucket_s(histogram.bucket))
                       FILTER (WHERE ceil(ranks.h) >= histogram.below
                                 AND ceil(ranks.h) < histogram.upto) AS hi_s
              FROM ranks
              JOIN histogram USING (task_name)
             GROUP BY ranks.task_name, ranks.i, ranks.h) AS ranks
     GROUP BY ranks.task_name
)
SELECT totals.task_name,
       totals.started,
       totals.runs,
       totals.succeeded,
       totals.failed,
       totals.retried,
       totals.aborted,
       (totals.failed + totals.retried)::double precision / nullif(totals.runs, 0)
           AS failure_rate,
       CASE WHEN totals.timed > 0 THEN
           least(greatest(percentiles.estimates[1], totals.min_run_s), totals.max_run_s)
       END AS p50_s,
       CASE WHEN totals.timed > 0 THEN
           least(greatest(percentiles.estimates[2], totals.min_run_s), totals.max_run_s)
       END AS p95_s,
       CASE WHEN totals.timed > 0 THEN
           least(greatest(percentiles.estimates[3], totals.min_run_s), totals.max_run_s)
       END AS p99_s,
       totals.run_s / nullif(totals.timed, 0) AS mean_s,
       totals.max_run_s AS max_s,
       totals.wait_s / nullif(totals.waited, 0) AS mean_wait_s,
       totals.interrupted,
       totals.expired
  FROM totals
  LEFT JOIN percentiles USING (task_name);

-- The writers of the events the view counts (sql/schema/31, 50, 52).
CREATE OR REPLACE FUNCTION pgjobs.expire_jobs(p_limit integer DEFAULT 1000)
    RETURNS SETOF bigint
    LANGUAGE plpgsql
    SET jit = off
AS $$
BEGIN
    DELETE FROM pgjobs.job_deadlines AS deadline
     USING procrastinate_jobs AS job
     WHERE deadline.job_id = job.id
       AND deadline.expired_at IS NULL
       AND deadline.expires_at <= now()
       AND job.status IN ('succeeded', 'failed', 'cancelled', 'aborted');
    RETURN QUERY
    WITH due AS (
        SELECT job.id
          FROM pgjobs.job_deadlines AS deadline
          JOIN procrastinate_jobs AS job ON job.id = deadline.job_id
         WHERE deadline.expired_at IS NULL
           AND deadline.expires_at <= now()
           AND job.status = 'todo'
         ORDER BY deadline.expires_at
         LIMIT greatest(p_limit, 0)
           FOR UPDATE OF job SKIP LOCKED
    ), expired AS (
        UPDATE procrastinate_jobs AS job
           SET status = 'cancelled'
          FROM due
         WHERE job.id = due.id
        RETURNING job.id, job.task_name
    ), marked AS (
        UPDATE pgjobs.job_deadlines AS deadline
           SET expired_at = now()
          FROM expired
         WHERE deadline.job_id = expired.id
    ), rolled AS (
        INSERT INTO pgjobs.task_rollups AS rollup
               (minute, task_name, bucket, shard, expired)
        SELECT date_trunc('minute', now()), expired.task_name, -3, pg_backend_pid() % 4,
               count(*)
          FROM expired
         GROUP BY expired.task_name
         ORDER BY expired.task_name
        ON CONFLICT (minute, task_name, bucket, shard) DO UPDATE
           SET expired = rollup.expired + excluded.expired
    )
    SELECT expired.id FROM expired ORDER BY expired.id;
END;
$$;

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
                    RETURNING procrastinate_events.job_id
                ), rolled AS (
                    -- Their starts and waits (since each job's last ready event) in
                    -- pgjobs.task_rollups, one row per task.
                    INSERT INTO pgjobs.task_rollups AS rollup
                           (minute, task_name, bucket, shard, started, waited, wait_s)
                    SELECT date_trunc('minute', now()), claimed.task_name, -2, pg_backend_pid() % 4,
                           count(*), count(ready.s), coalesce(sum(ready.s), 0)
                      FROM started
                      JOIN claimed ON claimed.id = started.job_id
                     CROSS JOIN LATERAL (
                           SELECT extract(epoch FROM now() - max(r.at) FILTER (
                                WHERE r.type IN ('deferred', 'deferred_for_retry', 'retried',
                                                 'scheduled')
                                  AND r.at <= now()))::double precision AS s
                             FROM procrastinate_events AS r
                            WHERE r.job_id = claimed.id) AS ready
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
                RETURNING procrastinate_events.job_id
            ), rolled AS (
                -- Their starts and waits (since each job's last ready event) in
                -- pgjobs.task_rollups, one row per task.
                INSERT INTO pgjobs.task_rollups AS rollup
                       (minute, task_name, bucket, shard, started, waited, wait_s)
                SELECT date_trunc('minute', now()), claimed.task_name, -2, pg_backend_pid() % 4,
                       count(*), count(ready.s), coalesce(sum(ready.s), 0)
                  FROM started
                  JOIN claimed ON claimed.id = started.job_id
                 CROSS JOIN LATERAL (
                       SELECT extract(epoch FROM now() - max(r.at) FILTER (
                            WHERE r.type IN ('deferred', 'deferred_for_retry', 'retried',
                                             'scheduled')
                              AND r.at <= now()))::double precision AS s
                         FROM procrastinate_events AS r
                        WHERE r.job_id = claimed.id) AS ready
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
        RETURNING procrastinate_events.job_id
    ), rolled AS (
        -- Their starts and waits (since each job's last ready event) in
        -- pgjobs.task_rollups, one row per task.
        INSERT INTO pgjobs.task_rollups AS rollup
               (minute, task_name, bucket, shard, started, waited, wait_s)
        SELECT date_trunc('minute', now()), claimed.task_name, -2, pg_backend_pid() % 4,
               count(*), count(ready.s), coalesce(sum(ready.s), 0)
          FROM started
          JOIN claimed ON claimed.id = started.job_id
         CROSS JOIN LATERAL (
               SELECT extract(epoch FROM now() - max(r.at) FILTER (
                    WHERE r.type IN ('deferred', 'deferred_for_retry', 'retried',
                                     'scheduled')
                      AND r.at <= now()))::double precision AS s
                 FROM procrastinate_events AS r
                WHERE r.job_id = claimed.id) AS ready
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

CREATE OR REPLACE FUNCTION pgjobs.finish_jobs(
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
    _shard smallint := pg_backend_pid() % 4;
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
        ),
        rolled AS (
            INSERT INTO pgjobs.task_rollups AS rollup
                   (minute, task_name, bucket, shard, started, waited, wait_s)
            SELECT date_trunc('minute', now()), job.task_name, -2, _shard,
                   count(*), count(ready.s), coalesce(sum(ready.s), 0)
              FROM recorded
              JOIN procrastinate_jobs AS job ON job.id = recorded.job_id
             CROSS JOIN LATERAL (
                   SELECT extract(epoch FROM now() - max(r.at) FILTER (
                        WHERE r.type IN ('deferred', 'deferred_for_retry', 'retried',
                                         'scheduled')
                          AND r.at <= now()))::double precision AS s
                     FROM procrastinate_events AS r
                    WHERE r.job_id = recorded.job_id) AS ready
             GROUP BY job.task_name
             ORDER BY job.task_name
            ON CONFLICT (minute, task_name, bucket, shard) DO UPDATE
               SET started = rollup.started + excluded.started,
                   waited = rollup.waited + excluded.waited,
                   wait_s = rollup.wait_s + excluded.wait_s
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
            RETURNING jobs.id, jobs.task_name, finished.status, current.old_status
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
        ),
        -- Their run times: since each one's last 'started' event. Every
        -- probe of procrastinate_events here and below is by job_id alone,
        -- the rest filtered: a condition on type and at could make a generic
        -- plan walk the (type, at) index through every event instead.
        ended AS (
            SELECT attempt.task_name, attempt.status, run.s
              FROM (SELECT updated.id, updated.task_name, updated.status
                      FROM updated WHERE updated.old_status = 'doing'
                    UNION ALL
                    SELECT deleted.id, deleted.task_name, deleted.status
                      FROM deleted WHERE deleted.old_status = 'doing') AS attempt
             CROSS JOIN LATERAL (
                   SELECT extract(epoch FROM now() - max(s.at) FILTER (
                              WHERE s.type = 'started' AND s.at <= now()))::double precision
                              AS s
                     FROM procrastinate_events AS s
                    WHERE s.job_id = attempt.id) AS run
        ),
        -- Per task, the outcomes (bucket -1) and the run-time histogram.
        rolled AS (
            INSERT INTO pgjobs.task_rollups AS rollup
                   (minute, task_name, bucket, shard, runs, succeeded, failed, aborted,
                    timed, run_s, min_run_s, max_run_s)
            SELECT date_trunc('minute', now()), ended.task_name, -1, _shard,
                   count(*),
                   count(*) FILTER (WHERE ended.status = 'succeeded'),
                   count(*) FILTER (WHERE ended.status = 'failed'),
                   count(*) FILTER (WHERE ended.status = 'aborted'),
                   count(ended.s), coalesce(sum(ended.s), 0), min(ended.s), max(ended.s)
              FROM ended
             GROUP BY ended.task_name
            UNION ALL
            SELECT pgjobs.run_time_block(now()), ended.task_name,
                   pgjobs.run_time_bucket(ended.s), _shard, count(*), 0, 0, 0, 0, 0,
                   NULL, NULL
              FROM ended
             WHERE ended.s IS NOT NULL
             GROUP BY ended.task_name, pgjobs.run_time_bucket(ended.s)
             ORDER BY 3, 2
            ON CONFLICT (minute, task_name, bucket, shard) DO UPDATE
               SET runs = rollup.runs + excluded.runs,
                   succeeded = rollup.succeeded + excluded.succeeded,
                   failed = rollup.failed + excluded.failed,
                   aborted = rollup.aborted + excluded.aborted,
                   timed = rollup.timed + excluded.timed,
                   run_s = rollup.run_s + excluded.run_s,
                   min_run_s = least(rollup.min_run_s, excluded.min_run_s),
                   max_run_s = greatest(rollup.max_run_s, excluded.max_run_s)
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

-- As 49_roles.sql grants every table and function of the schema to the
-- worker (the view reads the table with its owner's rights: the monitor
-- role needs nothing more).
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_worker') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON pgjobs.task_rollups TO pgjobs_worker;
        GRANT EXECUTE ON FUNCTION pgjobs.run_time_bucket(double precision),
                                  pgjobs.run_time_bucket_s(smallint),
                                  pgjobs.run_time_block(timestamptz),
                                  pgjobs.roll_up_event()
            TO pgjobs_worker;
    END IF;
END;
$$;

-- The rollups of the current window from the events already there, as the
-- view counted them until now, so an upgrade does not reset the stats (the
-- trigger above holds back new events until this transaction ends).
WITH since AS (
    SELECT date_trunc('minute', at) AS at, pgjobs.run_time_block(at) AS block
      FROM (SELECT now() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval
                       AS at) AS window_start
), ended AS (
    SELECT job.task_name,
           event.at,
           CASE WHEN event.type = 'deferred_for_retry' AND EXISTS (
                    SELECT 1 FROM pgjobs.job_errors AS interruption
                     WHERE interruption.job_id = event.job_id
                       AND interruption.kind = 'interruption'
                       AND interruption.failed_at = event.at)
                THEN 'interrupted'
                ELSE event.type::text
           END AS type,
           extract(epoch FROM event.at - started.at)::double precision AS run_s
      FROM since, procrastinate_events AS event
      JOIN procrastinate_jobs AS job ON job.id = event.job_id
     CROSS JOIN LATERAL (
           SELECT max(s.at) AS at
             FROM procrastinate_events AS s
            WHERE s.job_id = event.job_id AND s.type = 'started' AND s.at <= event.at
     ) AS started
     WHERE event.type IN ('succeeded', 'failed', 'deferred_for_retry', 'aborted')
       AND event.at >= since.block
), starts AS (
    SELECT job.task_name,
           date_trunc('minute', event.at) AS minute,
           extract(epoch FROM event.at - ready.at)::double precision AS wait_s
      FROM since, procrastinate_events AS event
      JOIN procrastinate_jobs AS job ON job.id = event.job_id
     CROSS JOIN LATERAL (
           SELECT max(r.at) AS at
             FROM procrastinate_events AS r
            WHERE r.job_id = event.job_id
              AND r.type IN ('deferred', 'deferred_for_retry', 'retried', 'scheduled')
              AND r.at <= event.at
     ) AS ready
     WHERE event.type = 'started'
       AND event.at >= since.at
)
INSERT INTO pgjobs.task_rollups
       (minute, task_name, bucket, shard, started, waited, wait_s, runs, succeeded,
        failed, retried, aborted, interrupted, expired, timed, run_s, min_run_s,
        max_run_s)
SELECT date_trunc('minute', ended.at), ended.task_name, -1, 0,
       0, 0, 0, count(*),
       count(*) FILTER (WHERE ended.type = 'succeeded'),
       count(*) FILTER (WHERE ended.type = 'failed'),
       count(*) FILTER (WHERE ended.type = 'deferred_for_retry'),
       count(*) FILTER (WHERE ended.type = 'aborted'),
       count(*) FILTER (WHERE ended.type = 'interrupted'),
       0, count(ended.run_s), coalesce(sum(ended.run_s), 0), min(ended.run_s),
       max(ended.run_s)
  FROM since, ended
 WHERE ended.at >= since.at
 GROUP BY date_trunc('minute', ended.at), ended.task_name
UNION ALL
SELECT pgjobs.run_time_block(ended.at), ended.task_name,
       pgjobs.run_time_bucket(ended.run_s), 0,
       0, 0, 0, count(*), 0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL
  FROM ended
 WHERE ended.run_s IS NOT NULL
 GROUP BY pgjobs.run_time_block(ended.at), ended.task_name,
          pgjobs.run_time_bucket(ended.run_s)
UNION ALL
SELECT starts.minute, starts.task_name, -2, 0,
       count(*), count(starts.wait_s), coalesce(sum(starts.wait_s), 0),
       0, 0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL
  FROM starts
 GROUP BY starts.minute, starts.task_name
UNION ALL
SELECT date_trunc('minute', deadline.expired_at), job.task_name, -3, 0,
       0, 0, 0, 0, 0, 0, 0, 0, 0, count(*), 0, 0, NULL, NULL
  FROM since, pgjobs.job_deadlines AS deadline
  JOIN procrastinate_jobs AS job ON job.id = deadline.job_id
 WHERE deadline.expired_at >= since.at
 GROUP BY date_trunc('minute', deadline.expired_at), job.task_name;
