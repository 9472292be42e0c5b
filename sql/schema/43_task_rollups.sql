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
      FROM pgjobs.event_log AS started
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
    AFTER INSERT ON pgjobs.event_log
    FOR EACH ROW
    WHEN (current_setting('pgjobs.batch_events', true) IS DISTINCT FROM 'on'
          AND NEW.type IN ('started', 'succeeded', 'failed', 'deferred_for_retry',
                           'aborted')
          AND NEW.at IS NOT NULL)
    EXECUTE FUNCTION pgjobs.roll_up_event();
