-- Pushing a new job to a waiting worker (pgjobs.worker.pushes): the
-- enqueueing transaction claims the job for it and sends the job itself in
-- the notification, so the worker starts it without a claim of its own (the
-- claim's round trip and its commit's flush were half of an idle worker's
-- latency).
--
-- A worker that waits for work (it holds the wakeups lock A of
-- sql/schema/55_jobs_inserted.sql) and has a slot free keeps that slot for
-- one pushed job and says so with a row here, keyed by the backend pid of
-- its LISTEN session. That session holds the advisory lock
-- (1885825636, its pid) for as long as it lives, so an enqueue tells a live
-- target from one whose session is gone (a killed worker, a lost
-- connection) and deletes the latter. UNLOGGED: the rows say which sessions
-- listen now; a crash or a failover ends those sessions anyway.
--
-- What is pushed (pgjobs.push_inserted_job, a row trigger that runs for
-- the first job a transaction inserts): that job, if it is 'todo', due now,
-- without a lock or a queueing lock, of a queue some target takes and that
-- is not paused, of a task under no concurrency or rate limit, and small
-- enough for a notification, and a target is free. It is inserted 'doing'
-- under the target worker with started_at set, the target row is deleted
-- and the job row goes to the channel 'pgjobs_push_<pid>': all of it
-- commits, or rolls back, with the enqueueing transaction. Every other job
-- is notified as before (55_jobs_inserted.sql). A session that sets
-- pgjobs.push to 'off' pushes nothing. The job's start
-- is counted in pgjobs.task_rollups by the worker once it has started it
-- (pgjobs.count_pushed_starts): an enqueueing transaction writes no row
-- that others write too, so it never waits for, or holds up, anyone.
--
-- A push whose notification is lost (the LISTEN connection dropped before
-- the worker read it) leaves the job 'doing' under a live worker that does
-- not hold it: its heartbeat puts it back (pgjobs.worker.reconcile).
CREATE UNLOGGED TABLE pgjobs.push_targets (
    listener integer PRIMARY KEY,
    worker_id bigint NOT NULL,
    -- NULL: every queue.
    queues character varying[],
    armed_at timestamptz NOT NULL DEFAULT now()
);

-- On the worker's LISTEN session, once per connection: the lock that says
-- it lives; returns its pid (the channel is 'pgjobs_push_<pid>').
CREATE FUNCTION pgjobs.push_listen()
    RETURNS integer
    LANGUAGE sql
AS $$
    SELECT pg_advisory_lock(1885825636, pg_backend_pid());
    SELECT pg_backend_pid();
$$;

-- A worker keeps a slot for one pushed job.
CREATE FUNCTION pgjobs.push_arm(
    p_listener integer, p_worker_id bigint, p_queues character varying[]
)
    RETURNS void
    LANGUAGE sql
AS $$
    INSERT INTO pgjobs.push_targets AS target (listener, worker_id, queues)
    VALUES (p_listener, p_worker_id, p_queues)
    ON CONFLICT (listener) DO UPDATE
       SET worker_id = excluded.worker_id, queues = excluded.queues,
           armed_at = excluded.armed_at;
$$;

-- A worker wants its kept slot back: 'released' (no push can come now),
-- 'pending' (an open enqueueing transaction is pushing to it: it commits,
-- and the job comes, or rolls back, and the row is back) or 'pushed' (a
-- push committed: the job is on its way in a notification).
CREATE FUNCTION pgjobs.push_disarm(p_listener integer)
    RETURNS text
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM FROM pgjobs.push_targets AS target
      WHERE target.listener = p_listener
        FOR UPDATE SKIP LOCKED;
    IF FOUND THEN
        DELETE FROM pgjobs.push_targets AS target WHERE target.listener = p_listener;
        RETURN 'released';
    END IF;
    IF EXISTS (SELECT FROM pgjobs.push_targets AS target
                WHERE target.listener = p_listener) THEN
        RETURN 'pending';
    END IF;
    RETURN 'pushed';
END;
$$;

-- The enqueue's side (see above), before each inserted row while
-- pgjobs.push is not 'off' for the transaction: it sets it 'off' at once,
-- so a transaction looks once, at its first job (a bulk insert calls this
-- for one row; the others are notified). A pushed job is inserted 'doing':
-- one row version, no claiming update. Callable by any role that inserts
-- jobs (SECURITY DEFINER: it writes push_targets, which they have no right
-- on); it only ever changes the row being inserted.
CREATE FUNCTION pgjobs.push_inserted_job()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pgjobs, public
AS $$
DECLARE
    _target record;
BEGIN
    PERFORM set_config('pgjobs.push', 'off', true);
    IF NEW.status <> 'todo'
       OR NEW.lock IS NOT NULL
       OR NEW.queueing_lock IS NOT NULL
       OR NEW.scheduled_at > now()
       OR NOT EXISTS (SELECT FROM pgjobs.push_targets)
       OR pgjobs.setting('pgjobs.notify', 'waiting') = 'never'
       OR octet_length(NEW.args::text) > 6000
       OR EXISTS (SELECT FROM pgjobs.paused_queues AS paused
                   WHERE paused.queue_name = NEW.queue_name)
       OR EXISTS (SELECT FROM pgjobs.effective_task_limits AS lim
                   WHERE lim.task_name = NEW.task_name) THEN
        RETURN NEW;
    END IF;
    FOR _target IN
        SELECT target.listener, target.worker_id
          FROM pgjobs.push_targets AS target
         WHERE target.queues IS NULL OR NEW.queue_name = ANY(target.queues)
         ORDER BY target.armed_at
           FOR UPDATE SKIP LOCKED
    LOOP
        DELETE FROM pgjobs.push_targets AS target
         WHERE target.listener = _target.listener;
        IF pg_try_advisory_lock_shared(1885825636, _target.listener) THEN
            -- Its LISTEN session is gone: the row goes, nothing is pushed.
            PERFORM pg_advisory_unlock_shared(1885825636, _target.listener);
            CONTINUE;
        END IF;
        NEW.status := 'doing';
        NEW.worker_id := _target.worker_id;
        NEW.started_at := now();
        PERFORM set_config('pgjobs.pushed_job', NEW.id::text, true);
        PERFORM pg_notify('pgjobs_push_' || _target.listener,
                          json_build_object('type', 'job_pushed',
                                            'job', row_to_json(NEW))::text);
        RETURN NEW;
    END LOOP;
    RETURN NEW;
END;
$$;

CREATE TRIGGER pgjobs_push_inserted_job
    BEFORE INSERT ON procrastinate_jobs
    FOR EACH ROW
    WHEN (current_setting('pgjobs.push', true) IS DISTINCT FROM 'off')
    EXECUTE FUNCTION pgjobs.push_inserted_job();

-- The worker has started pushed jobs: their starts and waits in
-- pgjobs.task_rollups, as pgjobs.fetch_jobs counts a claim's (in the minute
-- each started). Only jobs still 'doing' under the worker.
CREATE FUNCTION pgjobs.count_pushed_starts(p_worker_id bigint, p_ids bigint[])
    RETURNS void
    LANGUAGE sql
AS $$
    INSERT INTO pgjobs.task_rollups AS rollup
           (minute, task_name, bucket, shard, started, waited, wait_s)
    SELECT date_trunc('minute', job.started_at), job.task_name, -2, pg_backend_pid() % 4,
           count(*), count(ready.s), coalesce(sum(ready.s), 0)
      FROM procrastinate_jobs AS job
     CROSS JOIN LATERAL (
           SELECT extract(epoch FROM job.started_at - greatest(max(r.at) FILTER (
                WHERE r.type IN ('deferred', 'deferred_for_retry', 'retried',
                                 'scheduled')
                  AND r.at <= job.started_at), job.deferred_at))::double precision AS s
             FROM pgjobs.event_log AS r
            WHERE r.job_id = job.id) AS ready
     WHERE job.id = ANY(p_ids)
       AND job.worker_id = p_worker_id
       AND job.started_at IS NOT NULL
     GROUP BY date_trunc('minute', job.started_at), job.task_name
     ORDER BY 1, 2
    ON CONFLICT (minute, task_name, bucket, shard) DO UPDATE
       SET started = rollup.started + excluded.started,
           waited = rollup.waited + excluded.waited,
           wait_s = rollup.wait_s + excluded.wait_s;
$$;

-- Pushed jobs the worker will not run (it is stopping, or it kept no slot):
-- back to the queue as if never claimed (no event, no attempt).
CREATE FUNCTION pgjobs.unpush_jobs(p_worker_id bigint, p_ids bigint[])
    RETURNS SETOF bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    _batch text := current_setting('pgjobs.batch_events', true);
BEGIN
    PERFORM set_config('pgjobs.batch_events', 'on', true);
    RETURN QUERY
    UPDATE procrastinate_jobs AS job
       SET status = 'todo', worker_id = NULL, started_at = NULL
     WHERE job.id = ANY(p_ids)
       AND job.worker_id = p_worker_id
       AND job.status = 'doing'
    RETURNING job.id;
    PERFORM set_config('pgjobs.batch_events', coalesce(_batch, ''), true);
END;
$$;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_worker') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON pgjobs.push_targets TO pgjobs_worker;
    END IF;
END;
$$;
