-- Failover and hot standbys (README: Running in production): the views
-- measure time from pgjobs.as_of() (a standby's replay position, so replay
-- lag does not make live workers look silent) and report the lag itself
-- (pgjobs.health_replication); each heartbeat stores the jobs its worker
-- holds and returns the ones it does not (pgjobs.worker_states,
-- pgjobs.health_orphaned_jobs, pgjobs.release_jobs: pgjobs.reconcile); the
-- group finish only finishes jobs still 'doing' under the worker writing.

-- On a hot standby, how far the data is behind its primary: 0 while the WAL
-- receiver streams and everything received is replayed; else the time since
-- the last replayed transaction committed on the primary (replay paused or
-- slow, or the primary unreachable); NULL on a primary, and on a standby that
-- has replayed nothing since it started.
CREATE FUNCTION pgjobs.replication_lag()
    RETURNS interval
    LANGUAGE sql
    STABLE
AS $$
    SELECT CASE
        WHEN NOT pg_is_in_recovery() THEN NULL
        WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn()
             AND EXISTS (SELECT FROM pg_stat_wal_receiver) THEN interval '0'
        ELSE greatest(interval '0', now() - pg_last_xact_replay_timestamp())
    END;
$$;

-- The moment the data describes: now() on a primary; on a standby, now()
-- minus its replication lag (the last replayed commit when behind). The
-- views measure heartbeat ages and waits from it, so on a standby replaying
-- 40 s behind, a worker that beat 5 s before the last replayed commit is
-- 5 s silent, not 45 s.
CREATE FUNCTION pgjobs.as_of()
    RETURNS timestamptz
    LANGUAGE sql
    STABLE
AS $$
    SELECT now() - coalesce(pgjobs.replication_lag(), interval '0');
$$;

-- One row per queue that has waiting, scheduled or running jobs, jobs that
-- finished in the window, or pending dead letters.
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
)
SELECT queue_name::text AS queue_name,
       coalesce(active.waiting, 0) AS waiting,
       coalesce(active.scheduled, 0) AS scheduled,
       coalesce(active.running, 0) AS running,
       coalesce(finished.succeeded, 0) AS succeeded,
       coalesce(finished.failed, 0) AS failed,
       coalesce(letters.dead_letters, 0) AS dead_letters,
       coalesce(extract(epoch FROM latency.oldest_waiting)::double precision, 0)
           AS oldest_waiting_s
  FROM active
  FULL JOIN latency USING (queue_name)
  FULL JOIN finished USING (queue_name)
  FULL JOIN letters USING (queue_name);

-- Registered workers. alive: heartbeat within pgjobs.stalled_after.
CREATE OR REPLACE VIEW pgjobs.workers AS
SELECT worker.id AS worker_id,
       worker.last_heartbeat,
       extract(epoch FROM (SELECT pgjobs.as_of()) - worker.last_heartbeat)::double precision
           AS heartbeat_age_s,
       worker.last_heartbeat
           >= (SELECT pgjobs.as_of()) - pgjobs.setting('pgjobs.stalled_after', '30 seconds')::interval
           AS alive,
       (SELECT count(*)
          FROM procrastinate_jobs AS job
         WHERE job.worker_id = worker.id AND job.status = 'doing') AS running_jobs
  FROM procrastinate_workers AS worker;

-- Running jobs whose worker is gone or silent for pgjobs.stalled_after: the
-- workers' stalled-job rescuer retries them (or dead-letters them).
CREATE OR REPLACE VIEW pgjobs.stalled_jobs AS
SELECT job.id AS job_id,
       job.task_name::text AS task_name,
       job.queue_name::text AS queue_name,
       job.worker_id,
       job.attempts,
       started.at AS started_at,
       worker.last_heartbeat,
       extract(epoch FROM (SELECT pgjobs.as_of()) - worker.last_heartbeat)::double precision
           AS heartbeat_age_s
  FROM procrastinate_jobs AS job
  LEFT JOIN procrastinate_workers AS worker ON worker.id = job.worker_id
  CROSS JOIN LATERAL (
       SELECT max(event.at) AS at
         FROM procrastinate_events AS event
        WHERE event.job_id = job.id AND event.type = 'started'
  ) AS started
 WHERE job.status = 'doing'
   AND (worker.id IS NULL
        OR worker.last_heartbeat
           < (SELECT pgjobs.as_of()) - pgjobs.setting('pgjobs.stalled_after', '30 seconds')::interval);

-- One row per runtime schedule and per code-declared periodic task.
-- overdue: no success within expected_interval + grace since the later of the
-- last success and the time the schedule became active, where grace is
-- greatest(60 s, 10% of expected_interval). Paused schedules are never overdue.
CREATE OR REPLACE VIEW pgjobs.periodic_health AS
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

-- What each pgjobs worker held at its last heartbeat (pgjobs.worker_heartbeat,
-- pgjobs.reconcile): the jobs it runs, holds prefetched or is writing the
-- outcome of; unheld: its 'doing' jobs it did not hold then; orphans: those
-- unheld at two heartbeats in a row (a claim whose reply was still on its
-- way at one heartbeat is held at the next). token: the worker process, so
-- that a worker id handed out twice (ids given out in a failover's
-- replication lag window are given out again) is told apart.
CREATE TABLE pgjobs.worker_states (
    worker_id bigint PRIMARY KEY
        REFERENCES procrastinate_workers (id) ON DELETE CASCADE,
    token uuid NOT NULL,
    held bigint[] NOT NULL,
    unheld bigint[] NOT NULL,
    orphans bigint[] NOT NULL,
    beat_at timestamptz NOT NULL
);

-- Jobs 'doing' under a live worker that does not run them (after a
-- failover: outcomes lost in the replication lag window, claims it never
-- saw). The worker itself puts them back or writes their outcome again at
-- once (pgjobs.reconcile); a row here says that did not happen.
CREATE VIEW pgjobs.health_orphaned_jobs AS
SELECT 'orphaned_job'::text AS "check",
       'job ' || job.id AS subject,
       format('%s on queue %s: running on worker %s, which does not run it'
              || ' (its heartbeat at %s)',
              job.task_name, job.queue_name, job.worker_id, state.beat_at) AS detail,
       'critical'::text AS severity
  FROM pgjobs.worker_states AS state
  JOIN procrastinate_workers AS worker ON worker.id = state.worker_id
  JOIN procrastinate_jobs AS job
    ON job.id = ANY(state.orphans)
   AND job.worker_id = state.worker_id
   AND job.status = 'doing'
 WHERE worker.last_heartbeat
       >= (SELECT pgjobs.as_of())
          - pgjobs.setting('pgjobs.stalled_after', '30 seconds')::interval;

-- A hot standby behind its primary by more than pgjobs.max_replication_lag
-- (or not receiving WAL): the views describe the data as of
-- pgjobs.as_of(), that long ago. No row on a primary.
CREATE VIEW pgjobs.health_replication AS
SELECT 'replication_lag'::text AS "check",
       'this standby'::text AS subject,
       CASE WHEN standby.lag IS NULL
            THEN 'no transaction replayed since the standby started: lag unknown'
            ELSE format('%s s behind its primary%s (threshold %s): these views'
                        || ' show the data as of %s',
                        round(extract(epoch FROM standby.lag)::numeric, 1),
                        CASE WHEN standby.receiving THEN ''
                             ELSE ', receiving no WAL' END,
                        pgjobs.setting('pgjobs.max_replication_lag', '30 seconds')
                            ::interval,
                        pgjobs.as_of())
       END AS detail,
       'warning'::text AS severity
  FROM (SELECT pgjobs.replication_lag() AS lag,
               EXISTS (SELECT FROM pg_stat_wal_receiver) AS receiving) AS standby
 WHERE pg_is_in_recovery()
   AND (standby.lag IS NULL
        OR standby.lag > pgjobs.setting('pgjobs.max_replication_lag', '30 seconds')
                             ::interval);

-- One row per problem; no rows when all is well.
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

DROP FUNCTION pgjobs.worker_heartbeat(bigint);

-- procrastinate_update_heartbeat_v1, plus what a failover needs
-- (pgjobs.reconcile):
-- - a worker whose row is gone (pruned while it could not reach the
--   database, or lost in a failover's replication lag window) gets it back
--   under the same id, so its claims stay valid, and the id sequence is
--   moved past it so that no new worker is given it again;
-- - the jobs the worker holds (p_held) are stored in pgjobs.worker_states,
--   and the function returns its 'doing' jobs it does not hold (unheld) and
--   its orphans: those it held at neither this heartbeat nor the one before;
-- - a worker id another worker process (another p_token) has taken meanwhile
--   (ids handed out in the lag window are handed out again after a
--   failover): the worker is registered anew, its held jobs move to the new
--   id, and the new id is returned.
CREATE FUNCTION pgjobs.worker_heartbeat(
    p_worker_id bigint, p_token uuid, p_held bigint[]
)
    RETURNS TABLE (worker_id bigint, unheld bigint[], orphans bigint[])
    LANGUAGE plpgsql
AS $$
DECLARE
    _id bigint := p_worker_id;
    _owner uuid;
    _created boolean;
    _unheld bigint[];
    _orphans bigint[];
BEGIN
    SELECT state.token INTO _owner
      FROM pgjobs.worker_states AS state
     WHERE state.worker_id = p_worker_id
       FOR UPDATE;
    IF _owner IS DISTINCT FROM p_token AND _owner IS NOT NULL THEN
        INSERT INTO procrastinate_workers DEFAULT VALUES
        RETURNING procrastinate_workers.id INTO _id;
        UPDATE procrastinate_jobs AS job
           SET worker_id = _id
         WHERE job.id = ANY(p_held)
           AND job.worker_id = p_worker_id
           AND job.status = 'doing';
    ELSE
        INSERT INTO procrastinate_workers (id, last_heartbeat) OVERRIDING SYSTEM VALUE
        VALUES (p_worker_id, now())
        ON CONFLICT (id) DO UPDATE SET last_heartbeat = now()
        RETURNING xmax = 0 INTO _created;
        IF _created AND p_worker_id
                        >= (SELECT seq.last_value FROM procrastinate_workers_id_seq AS seq)
        THEN
            PERFORM setval(pg_get_serial_sequence('procrastinate_workers', 'id'),
                           p_worker_id);
        END IF;
    END IF;
    SELECT coalesce(array_agg(job.id ORDER BY job.id), '{}') INTO _unheld
      FROM procrastinate_jobs AS job
     WHERE job.worker_id = _id
       AND job.status = 'doing'
       AND job.id <> ALL(p_held);
    INSERT INTO pgjobs.worker_states AS state
           (worker_id, token, held, unheld, orphans, beat_at)
    VALUES (_id, p_token, p_held, _unheld, '{}', now())
    ON CONFLICT ON CONSTRAINT worker_states_pkey DO UPDATE
       SET held = excluded.held,
           unheld = excluded.unheld,
           orphans = ARRAY(SELECT unnest(excluded.unheld)
                           INTERSECT
                           SELECT unnest(state.unheld)
                           ORDER BY 1),
           beat_at = excluded.beat_at
    RETURNING state.orphans INTO _orphans;
    RETURN QUERY SELECT _id, _unheld, _orphans;
END;
$$;

-- Put back in the queue the jobs p_ids still 'doing' under p_worker_id
-- (its orphans: see pgjobs.worker_heartbeat), with no attempt counted.
CREATE FUNCTION pgjobs.release_jobs(p_worker_id bigint, p_ids bigint[])
    RETURNS SETOF bigint
    LANGUAGE sql
AS $$
    UPDATE procrastinate_jobs
       SET status = 'todo', worker_id = NULL
     WHERE id = ANY(p_ids)
       AND worker_id = p_worker_id
       AND status = 'doing'
    RETURNING id;
$$;

DROP FUNCTION pgjobs.finish_jobs(bigint[], procrastinate_job_status[], boolean[], bigint[]);

-- procrastinate_finish_job_v1 for many jobs at once, with its status events.
-- Returns the jobs it finished (started false); a job no longer todo/doing
-- (e.g. rescued meanwhile) is skipped instead of failing the whole batch.
-- PL/pgSQL so that the plan is cached (a SQL function is planned on every
-- call). No JIT, like pgjobs.fetch_jobs: compiling costs hundreds of ms,
-- running it well under one.
-- p_started_ids: prefetched jobs the worker is about to start (see
-- pgjobs.fetch_jobs): their 'started' events are written first, for those
-- still 'doing', and returned (started true); the worker starts only those.
-- The outcomes of schedule and periodic-task jobs are recorded here for the
-- whole batch (pgjobs.record_periodic_outcome's row trigger is skipped while
-- pgjobs.batch_events is on): an index probe per job instead of a trigger
-- call per job, and nothing more for jobs that are neither.
-- p_worker_id: the worker writing the outcomes; only jobs still 'doing'
-- under it are finished (after a failover a job id lost in the replication
-- lag window can name another job: its outcome must not land on it).
CREATE FUNCTION pgjobs.finish_jobs(
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

-- As 0005 grants pgjobs' tables and functions to the worker role.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_worker') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON pgjobs.worker_states TO pgjobs_worker;
        GRANT UPDATE ON SEQUENCE procrastinate_workers_id_seq TO pgjobs_worker;
        GRANT EXECUTE ON FUNCTION pgjobs.worker_heartbeat(bigint, uuid, bigint[]),
            pgjobs.release_jobs(bigint, bigint[]),
            pgjobs.finish_jobs(bigint[], procrastinate_job_status[], boolean[],
                               bigint[], bigint),
            pgjobs.replication_lag(), pgjobs.as_of()
            TO pgjobs_worker;
    END IF;
END;
$$;
