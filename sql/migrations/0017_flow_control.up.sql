-- Flow control (issue 19): paused queues and start-by deadlines.

-- Flow control (README: Flow control): paused queues and start-by deadlines.
-- The claim (pgjobs.fetch_jobs) reads both; so does the start of a
-- prefetched job (pgjobs.finish_jobs).

-- A queue listed here still takes enqueues, but no worker starts its jobs;
-- jobs already running finish. Every claim reads this table, so a pause or a
-- resume is seen by running workers at their next claim (a resume wakes the
-- idle ones: pgjobs.resume_queue).
CREATE TABLE pgjobs.paused_queues (
    queue_name text PRIMARY KEY
        CHECK (char_length(queue_name) BETWEEN 1 AND 128),
    paused_at timestamptz NOT NULL DEFAULT now(),
    paused_by text NOT NULL DEFAULT session_user
);

-- procrastinate_jobs.queue_name is varchar(128); text has no NUL.
CREATE FUNCTION pgjobs.check_queue_name(p_queue_name text)
    RETURNS void
    LANGUAGE plpgsql
    IMMUTABLE
AS $$
BEGIN
    IF p_queue_name IS NULL OR char_length(p_queue_name) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'queue name must be 1 to 128 characters, got %',
            coalesce(quote_literal(left(p_queue_name, 60)), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$$;

-- Pause a queue; false when it was paused already (its row is kept as is).
CREATE FUNCTION pgjobs.pause_queue(p_queue_name text, p_paused_by text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pgjobs.check_queue_name(p_queue_name);
    INSERT INTO pgjobs.paused_queues (queue_name, paused_by)
    VALUES (p_queue_name, coalesce(p_paused_by, session_user))
    ON CONFLICT (queue_name) DO NOTHING;
    RETURN FOUND;
END;
$$;

-- Resume a queue; false when it was not paused. At commit, the workers
-- listening for the queue (or for every queue) are woken as by an enqueue,
-- so its jobs start at once, not at the next poll.
CREATE FUNCTION pgjobs.resume_queue(p_queue_name text)
    RETURNS boolean
    LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM pgjobs.paused_queues WHERE queue_name = p_queue_name;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- Channel names stop at 63 bytes (see pgjobs.notify_jobs_inserted).
    IF octet_length('procrastinate_queue_v1#' || p_queue_name) <= 63 THEN
        PERFORM pg_notify('procrastinate_queue_v1#' || p_queue_name,
                          json_build_object('type', 'job_inserted',
                                            'job_id', NULL)::text);
    END IF;
    PERFORM pg_notify('procrastinate_any_queue_v1',
                      json_build_object('type', 'job_inserted', 'job_id', NULL)::text);
    RETURN true;
END;
$$;

-- Start-by deadlines (enqueue option expires_at / expires_in): a job not
-- started by expires_at never starts; a retry due after it does not start
-- either. The claim skips such a job and it ends 'cancelled' with
-- expired_at set here (pgjobs.expire_jobs). A side table, as
-- pgjobs.job_traces: procrastinate's rows stay as they are; gone with its job.
CREATE TABLE pgjobs.job_deadlines (
    job_id bigint PRIMARY KEY REFERENCES procrastinate_jobs (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    expired_at timestamptz
);
-- Deadlines not yet acted on, by time (the claim's "anything due?" probe
-- and the sweep).
CREATE INDEX job_deadlines_due_idx ON pgjobs.job_deadlines (expires_at)
    WHERE expired_at IS NULL;
-- Expirations in the stats window (queue_stats, task_stats).
CREATE INDEX job_deadlines_expired_at_idx ON pgjobs.job_deadlines (expired_at)
    WHERE expired_at IS NOT NULL;

-- SECURITY DEFINER: callable by the enqueuer role, which has no grant on
-- the table itself (as pgjobs.store_job_traces).
CREATE FUNCTION pgjobs.store_job_deadlines(p_ids bigint[], p_expires_at timestamptz)
    RETURNS void
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pgjobs, public
AS $$
    INSERT INTO pgjobs.job_deadlines (job_id, expires_at)
    SELECT id, p_expires_at
      FROM unnest(p_ids) AS id
     WHERE id IS NOT NULL
    ON CONFLICT (job_id) DO UPDATE SET expires_at = excluded.expires_at;
$$;

-- End up to p_limit waiting jobs whose deadline has passed: 'cancelled'
-- (procrastinate's trigger writes the 'cancelled' event; not a failure, no
-- dead letter), expired_at set. Deadlines of jobs that ended otherwise are
-- dropped; those of running jobs stay (a retry after the deadline expires).
-- Jobs another transaction holds (a claim) are skipped. Returns the ids
-- expired. Called by every claim that finds a deadline due, and by the
-- workers' sweep (pgjobs.expiry) for queues no worker claims from.
CREATE FUNCTION pgjobs.expire_jobs(p_limit integer DEFAULT 1000)
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
        RETURNING job.id
    ), marked AS (
        UPDATE pgjobs.job_deadlines AS deadline
           SET expired_at = now()
          FROM expired
         WHERE deadline.job_id = expired.id
    )
    SELECT expired.id FROM expired ORDER BY expired.id;
END;
$$;

-- The claim and the start of prefetched jobs honour both (see
-- sql/schema/50_hot_path.sql).
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
    PERFORM set_config('pgjobs.batch_events', 'on', true);
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

-- The views gain paused and expired (see sql/schema/40_monitoring.sql);
-- a paused queue's wait is no latency problem.
CREATE OR REPLACE VIEW pgjobs.queue_stats AS
WITH active AS (
    SELECT job.queue_name,
           count(*) FILTER (WHERE job.status = 'todo'
                              AND (job.scheduled_at IS NULL OR job.scheduled_at <= (SELECT pgjobs.as_of())))
               AS waiting,
           count(*) FILTER (WHERE job.status = 'todo' AND job.scheduled_at > (SELECT pgjobs.as_of()))
               AS scheduled,
           count(*) FILTER (WHERE job.status = 'doing') AS running
      FROM procrastinate_jobs AS job
     WHERE job.status IN ('todo', 'doing')
     GROUP BY job.queue_name
), latency AS (
    -- A waiting job has been ready since its run-at time or its last
    -- (re)queueing, whichever is later.
    SELECT job.queue_name,
           max((SELECT pgjobs.as_of()) - greatest(job.scheduled_at, queued.at)) AS oldest_waiting
      FROM procrastinate_jobs AS job
      CROSS JOIN LATERAL (
           SELECT max(event.at) AS at
             FROM procrastinate_events AS event
            WHERE event.job_id = job.id
              AND event.type IN ('deferred', 'deferred_for_retry', 'retried')
      ) AS queued
     WHERE job.status = 'todo'
       AND (job.scheduled_at IS NULL OR job.scheduled_at <= (SELECT pgjobs.as_of()))
     GROUP BY job.queue_name
), finished AS (
    SELECT job.queue_name,
           count(*) FILTER (WHERE event.type = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE event.type = 'failed') AS failed
      FROM procrastinate_events AS event
      JOIN procrastinate_jobs AS job ON job.id = event.job_id
     WHERE event.type IN ('succeeded', 'failed')
       -- as_of() called, not sub-selected: the planner folds it to estimate
       -- the window's rows (an InitPlan is a blind 1/3: a hash join over
       -- every job instead of the (type, at) index).
       AND event.at >= pgjobs.as_of() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval
     GROUP BY job.queue_name
), letters AS (
    SELECT letter.queue_name, count(*) AS dead_letters
      FROM pgjobs.dead_letters AS letter
     WHERE letter.replayed_at IS NULL
     GROUP BY letter.queue_name
), expirations AS (
    SELECT job.queue_name::text AS queue_name, count(*) AS expired
      FROM pgjobs.job_deadlines AS deadline
      JOIN procrastinate_jobs AS job ON job.id = deadline.job_id
     WHERE deadline.expired_at
           >= pgjobs.as_of() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval
     GROUP BY job.queue_name
), paused AS (
    SELECT paused.queue_name, true AS paused FROM pgjobs.paused_queues AS paused
)
SELECT queue_name::text AS queue_name,
       coalesce(active.waiting, 0) AS waiting,
       coalesce(active.scheduled, 0) AS scheduled,
       coalesce(active.running, 0) AS running,
       coalesce(finished.succeeded, 0) AS succeeded,
       coalesce(finished.failed, 0) AS failed,
       coalesce(letters.dead_letters, 0) AS dead_letters,
       coalesce(extract(epoch FROM latency.oldest_waiting)::double precision, 0)
           AS oldest_waiting_s,
       coalesce(paused.paused, false) AS paused,
       coalesce(expirations.expired, 0) AS expired
  FROM active
  FULL JOIN latency USING (queue_name)
  FULL JOIN finished USING (queue_name)
  FULL JOIN letters USING (queue_name)
  FULL JOIN expirations USING (queue_name)
  FULL JOIN paused USING (queue_name);

CREATE OR REPLACE VIEW pgjobs.task_stats AS
WITH ended AS (
    SELECT job.task_name,
           CASE WHEN event.type = 'deferred_for_retry' AND EXISTS (
                    SELECT 1 FROM pgjobs.job_errors AS interruption
                     WHERE interruption.job_id = event.job_id
                       AND interruption.kind = 'interruption'
                       AND interruption.failed_at = event.at)
                THEN 'interrupted'
                ELSE event.type::text
           END AS type,
           extract(epoch FROM event.at - started.at)::double precision AS run_s
      FROM procrastinate_events AS event
      JOIN procrastinate_jobs AS job ON job.id = event.job_id
      CROSS JOIN LATERAL (
           SELECT max(s.at) AS at
             FROM procrastinate_events AS s
            WHERE s.job_id = event.job_id AND s.type = 'started' AND s.at <= event.at
      ) AS started
     WHERE event.type IN ('succeeded', 'failed', 'deferred_for_retry', 'aborted')
       AND event.at >= now() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval
), runs AS (
    SELECT task_name,
           count(*) AS runs,
           count(*) FILTER (WHERE type = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE type = 'failed') AS failed,
           count(*) FILTER (WHERE type = 'deferred_for_retry') AS retried,
           count(*) FILTER (WHERE type = 'aborted') AS aborted,
           count(*) FILTER (WHERE type = 'interrupted') AS interrupted,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY run_s)
               AS run_percentiles,
           avg(run_s) AS mean_run_s,
           max(run_s) AS max_run_s
      FROM ended
     GROUP BY task_name
), waits AS (
    SELECT job.task_name,
           count(*) AS started,
           avg(extract(epoch FROM event.at - ready.at))::double precision AS mean_wait_s
      FROM procrastinate_events AS event
      JOIN procrastinate_jobs AS job ON job.id = event.job_id
      CROSS JOIN LATERAL (
           SELECT max(r.at) AS at
             FROM procrastinate_events AS r
            WHERE r.job_id = event.job_id
              AND r.type IN ('deferred', 'deferred_for_retry', 'retried', 'scheduled')
              AND r.at <= event.at
      ) AS ready
     WHERE event.type = 'started'
       AND event.at >= now() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval
     GROUP BY job.task_name
), expirations AS (
    SELECT job.task_name, count(*) AS expired
      FROM pgjobs.job_deadlines AS deadline
      JOIN procrastinate_jobs AS job ON job.id = deadline.job_id
     WHERE deadline.expired_at
           >= now() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval
     GROUP BY job.task_name
)
SELECT task_name::text AS task_name,
       coalesce(waits.started, 0) AS started,
       coalesce(runs.runs, 0) AS runs,
       coalesce(runs.succeeded, 0) AS succeeded,
       coalesce(runs.failed, 0) AS failed,
       coalesce(runs.retried, 0) AS retried,
       coalesce(runs.aborted, 0) AS aborted,
       (runs.failed + runs.retried)::double precision / nullif(runs.runs, 0)
           AS failure_rate,
       runs.run_percentiles[1] AS p50_s,
       runs.run_percentiles[2] AS p95_s,
       runs.run_percentiles[3] AS p99_s,
       runs.mean_run_s AS mean_s,
       runs.max_run_s AS max_s,
       waits.mean_wait_s,
       coalesce(runs.interrupted, 0) AS interrupted,
       coalesce(expirations.expired, 0) AS expired
  FROM runs
  FULL JOIN waits USING (task_name)
  FULL JOIN expirations USING (task_name);

CREATE OR REPLACE VIEW pgjobs.health AS
SELECT 'stalled_job'::text AS "check",
       'job ' || stalled.job_id AS subject,
       format('%s on queue %s: %s', stalled.task_name, stalled.queue_name,
              CASE WHEN stalled.last_heartbeat IS NULL
                   THEN 'its worker is gone'
                   ELSE format('worker %s silent for %s s', stalled.worker_id,
                               round(stalled.heartbeat_age_s::numeric))
              END) AS detail,
       'critical'::text AS severity
  FROM pgjobs.stalled_jobs AS stalled
UNION ALL
SELECT "check", subject, detail, severity
  FROM pgjobs.health_overdue_schedules
UNION ALL SELECT "check", subject, detail, severity FROM pgjobs.health_interrupted_jobs
UNION ALL SELECT "check", subject, detail, severity FROM pgjobs.health_orphaned_jobs
UNION ALL SELECT "check", subject, detail, severity FROM pgjobs.health_replication
UNION ALL SELECT "check", subject, detail, severity FROM pgjobs.health_xmin_horizon
UNION ALL
SELECT 'new_dead_letters',
       'task ' || letters.task_name,
       format('%s new dead letter(s) in the last %s (threshold %s)',
              letters.count,
              pgjobs.setting('pgjobs.dead_letter_window', '1 hour')::interval,
              pgjobs.setting('pgjobs.dead_letter_threshold', '0')::integer),
       'warning'
  FROM (SELECT letter.task_name, count(*) AS count
          FROM pgjobs.dead_letters AS letter
         WHERE letter.replayed_at IS NULL
           AND letter.created_at >= pgjobs.as_of()
               - pgjobs.setting('pgjobs.dead_letter_window', '1 hour')::interval
         GROUP BY letter.task_name) AS letters
 WHERE letters.count > pgjobs.setting('pgjobs.dead_letter_threshold', '0')::integer
UNION ALL
SELECT 'queue_latency',
       'queue ' || queue.queue_name,
       format('oldest waiting job is %s s old (threshold %s)',
              round(queue.oldest_waiting_s::numeric),
              pgjobs.setting('pgjobs.max_latency', '5 minutes')::interval),
       'warning'
  FROM pgjobs.queue_stats AS queue
 WHERE queue.oldest_waiting_s
       > extract(epoch FROM pgjobs.setting('pgjobs.max_latency', '5 minutes')::interval)
   -- A paused queue waits on purpose (pgjobs queues list shows it).
   AND NOT queue.paused
UNION ALL
SELECT 'dead_rows',
       'table ' || stat.relid::regclass::text,
       format('%s dead row(s) beside %s live: %s',
              stat.n_dead_tup, stat.n_live_tup,
              CASE WHEN current_setting('autovacuum') = 'off'
                   THEN 'autovacuum is off on this server; turn it on or VACUUM '
                        || stat.relid::regclass::text || ' (claims slow down as dead rows pile up)'
                   WHEN 'autovacuum_enabled=false' = ANY(class.reloptions)
                   THEN 'autovacuum is disabled on this table; enable it or VACUUM '
                        || stat.relid::regclass::text
                   ELSE 'autovacuum is not keeping up (last autovacuum '
                        || coalesce(stat.last_autovacuum::text, 'never') || ')'
              END),
       'warning'
  FROM pg_stat_user_tables AS stat
  JOIN pg_class AS class ON class.oid = stat.relid
 WHERE stat.relid IN ('procrastinate_jobs'::regclass, 'procrastinate_events'::regclass)
   AND stat.n_dead_tup > greatest(
           pgjobs.setting('pgjobs.max_dead_rows', '100000')::bigint,
           stat.n_live_tup / 10);

-- As 0005 grants pgjobs' tables and functions to the worker role.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_worker') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON pgjobs.paused_queues, pgjobs.job_deadlines
            TO pgjobs_worker;
        GRANT EXECUTE ON FUNCTION pgjobs.check_queue_name(text),
            pgjobs.pause_queue(text, text), pgjobs.resume_queue(text),
            pgjobs.store_job_deadlines(bigint[], timestamptz),
            pgjobs.expire_jobs(integer)
            TO pgjobs_worker;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_monitor') THEN
        -- Which queues are paused, by whom: no job arguments.
        GRANT SELECT ON pgjobs.paused_queues TO pgjobs_monitor;
    END IF;
END;
$$;
