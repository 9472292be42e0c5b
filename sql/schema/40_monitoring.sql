-- Monitoring: plain SQL views over procrastinate's tables and pgjobs' own,
-- the indexes that keep them fast with millions of finished jobs, and the
-- least-privilege group roles. Views never expose job arguments.

-- Tunables the views read: a setting of the session, role or database when
-- set (SET pgjobs.stats_window = '1 day'; ALTER DATABASE app SET ...), else
-- the default given here.
CREATE FUNCTION pgjobs.setting(p_name text, p_default text)
    RETURNS text
    LANGUAGE sql
    STABLE
AS $$
    SELECT coalesce(nullif(current_setting(p_name, true), ''), p_default);
$$;

-- Finished-attempt events in a time window (queue_stats, task_stats) and
-- retention's age checks: without it, every view scans all events.
CREATE INDEX pgjobs_events_type_at_idx ON procrastinate_events (type, at);

-- Waiting, scheduled and running jobs per queue without touching the
-- finished ones.
CREATE INDEX pgjobs_jobs_active_idx ON procrastinate_jobs (queue_name, status, scheduled_at)
    WHERE status IN ('todo', 'doing');

-- One row per queue that has waiting, scheduled or running jobs, jobs that
-- finished or expired in the window, or pending dead letters, and per
-- paused queue. paused: no worker starts its jobs (pgjobs.paused_queues);
-- expired: jobs that ended unstarted at their start-by deadline in the
-- window (pgjobs.job_deadlines).
CREATE VIEW pgjobs.queue_stats AS
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

-- One row per task that started or ended an attempt, or had a job expire
-- unstarted (expired: see pgjobs.job_deadlines), in the window.
-- Run time: from an attempt's 'started' event to its end ('succeeded',
-- 'failed', 'deferred_for_retry' or 'aborted'); wait: from the job being
-- ready (queued, scheduled time, retry time) to its 'started' event.
-- interrupted: attempts a worker shutdown handed back to the queue without
-- counting them (their 'deferred_for_retry' event has an 'interruption' row
-- of the same transaction in pgjobs.job_errors); not failures.
CREATE VIEW pgjobs.task_stats AS
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

-- Registered workers. alive: heartbeat within pgjobs.stalled_after.
CREATE VIEW pgjobs.workers AS
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
CREATE VIEW pgjobs.stalled_jobs AS
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

-- What each pgjobs worker held at its last heartbeat (pgjobs.worker_heartbeat,
-- pgjobs.worker.reconcile): the jobs it runs, holds prefetched or is writing the
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
-- once (pgjobs.worker.reconcile); a row here says that did not happen.
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

-- What holds this database's xmin horizon back: VACUUM removes no row
-- version that a snapshot still open may see, so a transaction left open
-- (idle in transaction, a long report, a forgotten psql session) lets the
-- dead rows of every job finished since pile up in procrastinate_jobs and
-- procrastinate_events, and claims slow down walking them. One row per
-- holder: transactions of this database holding a snapshot or a
-- transaction id (age: since the transaction began), prepared transactions
-- (since PREPARE TRANSACTION) and replication slots with an xmin (a standby
-- with hot_standby_feedback; age: since the slot went inactive, known on
-- PostgreSQL 17+ only, NULL before and while the slot is active: the
-- standby's own pgjobs.health reports the long transactions there).
-- xid_age: transactions begun since the holder's xmin or xid.
-- SECURITY DEFINER: the start of other roles' transactions is hidden from
-- roles without pg_read_all_stats; this function shows the health check
-- what it needs (pid, application name, user, state, ages), never query
-- texts, to the roles allowed to run it (pgjobs_monitor, pgjobs_worker and
-- the owner; not PUBLIC). It sees what its owner (the role that ran the
-- migration) may see: a superuser or a member of pg_read_all_stats sees
-- every session.
CREATE FUNCTION pgjobs.xmin_holders()
    RETURNS TABLE (
        kind text, name text, pid integer, application_name text,
        user_name text, state text, age interval, xid_age integer)
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog
AS $$
    SELECT 'transaction', NULL, activity.pid, activity.application_name,
           activity.usename::text, activity.state,
           now() - activity.xact_start,
           greatest(age(activity.backend_xmin), age(activity.backend_xid))
      FROM pg_stat_activity AS activity
     WHERE activity.datname = current_database()
       AND activity.pid <> pg_backend_pid()
       AND activity.backend_type = 'client backend'
       AND (activity.backend_xmin IS NOT NULL OR activity.backend_xid IS NOT NULL)
    UNION ALL
    SELECT 'prepared transaction', prepared.gid, NULL, NULL,
           prepared.owner::text, NULL, now() - prepared.prepared,
           age(prepared.transaction)
      FROM pg_prepared_xacts AS prepared
     WHERE prepared.database = current_database()
    UNION ALL
    SELECT 'replication slot', slot.slot_name::text, slot.active_pid, NULL, NULL,
           CASE WHEN slot.active THEN 'active' ELSE 'inactive' END,
           -- inactive_since is PostgreSQL 17's; read through jsonb so the
           -- function is created on older servers too.
           now() - (to_jsonb(slot) ->> 'inactive_since')::timestamptz,
           age(slot.xmin)
      FROM pg_replication_slots AS slot
     WHERE slot.xmin IS NOT NULL;
$$;

-- The holders of pgjobs.xmin_holders() older than pgjobs.max_xmin_age.
CREATE VIEW pgjobs.health_xmin_horizon AS
SELECT 'xmin_horizon'::text AS "check",
       CASE holder.kind
            WHEN 'transaction' THEN 'pid ' || holder.pid
            WHEN 'prepared transaction' THEN 'prepared transaction ' || holder.name
            ELSE 'slot ' || holder.name
       END AS subject,
       format('%s for %s s, %s transactions behind (threshold %s): it holds'
              || ' back the xmin horizon, so VACUUM cannot remove the dead rows'
              || ' of the jobs finished since',
              CASE holder.kind
                   WHEN 'transaction'
                   THEN format('transaction of %s (application %s, %s) open',
                               holder.user_name,
                               coalesce(nullif(holder.application_name, ''), 'unnamed'),
                               coalesce(holder.state, 'state unknown'))
                   WHEN 'prepared transaction'
                   THEN format('prepared transaction of %s waiting for its COMMIT PREPARED',
                               holder.user_name)
                   ELSE 'replication slot inactive'
              END,
              round(extract(epoch FROM holder.age)::numeric),
              holder.xid_age,
              pgjobs.setting('pgjobs.max_xmin_age', '5 minutes')::interval) AS detail,
       'warning'::text AS severity
  FROM pgjobs.xmin_holders() AS holder
 WHERE holder.age > pgjobs.setting('pgjobs.max_xmin_age', '5 minutes')::interval;

-- Circuit breaker states without their last error text.
CREATE VIEW pgjobs.breaker_states AS
SELECT breaker.name,
       breaker.state,
       breaker.failure_count,
       breaker.failure_threshold,
       breaker.opened_at,
       breaker.reopens_at
  FROM pgjobs.breakers AS breaker;

-- Overdue periodic tasks as health rows, from pgjobs.periodic_health
-- (revision 0004).
CREATE VIEW pgjobs.health_overdue_schedules AS
SELECT 'overdue_schedule'::text AS "check",
       'schedule ' || schedule.name AS subject,
       format('%s: last success %s, expected every %s',
              schedule.task_name,
              coalesce(schedule.last_success_at::text, 'never'),
              schedule.expected_interval) AS detail,
       'critical'::text AS severity
  FROM pgjobs.periodic_health AS schedule
 WHERE schedule.overdue;

-- Jobs still waiting or running whose interruptions by worker shutdowns
-- reached PGJOBS_MAX_INTERRUPTIONS (one of their 'WorkerShutdown' rows
-- counted as a failed attempt: see pgjobs.interrupt_job): they run longer
-- than the workers' shutdown grace, so every deploy interrupts them.
CREATE VIEW pgjobs.health_interrupted_jobs AS
SELECT 'interrupted_job'::text AS "check",
       'job ' || job.id AS subject,
       format('%s on queue %s: interrupted by %s worker shutdowns (last at %s):'
              || ' it outlives the shutdown grace (PGJOBS_SHUTDOWN_GRACE), so'
              || ' each interruption now counts as a failed attempt'
              || ' (%s attempt(s) so far)',
              job.task_name, job.queue_name, interrupted.interruptions,
              interrupted.last_at, job.attempts) AS detail,
       'warning'::text AS severity
  FROM (SELECT e.job_id, count(*) AS interruptions, max(e.failed_at) AS last_at
          FROM pgjobs.job_errors AS e
         WHERE e.error_type = 'WorkerShutdown'
         GROUP BY e.job_id
        HAVING count(*) FILTER (WHERE e.kind = 'error') > 0) AS interrupted
  JOIN procrastinate_jobs AS job ON job.id = interrupted.job_id
 WHERE job.status IN ('todo', 'doing');

-- One row per problem; no rows when all is well.
CREATE VIEW pgjobs.health AS
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

-- Least-privilege group roles (NOLOGIN): grant them to your login roles,
-- e.g. GRANT pgjobs_monitor TO grafana. Roles are cluster-wide, so they are
-- created only when missing and never dropped by a downgrade; without the
-- CREATEROLE privilege the migration skips them with a notice.
DO $$
DECLARE
    _role text;
BEGIN
    FOREACH _role IN ARRAY ARRAY['pgjobs_enqueuer', 'pgjobs_worker', 'pgjobs_monitor']
    LOOP
        CONTINUE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = _role);
        IF NOT (SELECT rolcreaterole OR rolsuper FROM pg_roles
                 WHERE rolname = current_user) THEN
            RAISE NOTICE 'pgjobs: role % is missing and % may not create it; skipped',
                _role, current_user;
            CONTINUE;
        END IF;
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', _role);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by a concurrent migration
        END;
    END LOOP;
END;
$$;

-- Privileges in this database (the roles may exist without them elsewhere).
DO $$
DECLARE
    _procrastinate_schema text := (SELECT relnamespace::regnamespace::text
                                     FROM pg_class
                                    WHERE oid = 'procrastinate_jobs'::regclass);
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_enqueuer') THEN
        -- Enqueue only: pgjobs.defer_jobs / procrastinate_defer_jobs_v1 and
        -- what their INSERT and its triggers need. No reading of jobs.
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO pgjobs_enqueuer',
                       _procrastinate_schema);
        GRANT USAGE ON SCHEMA pgjobs TO pgjobs_enqueuer;
        GRANT EXECUTE ON FUNCTION pgjobs.defer_jobs(procrastinate_job_to_defer_v1[])
            TO pgjobs_enqueuer;
        GRANT EXECUTE ON FUNCTION procrastinate_defer_jobs_v1(procrastinate_job_to_defer_v1[])
            TO pgjobs_enqueuer;
        GRANT INSERT ON procrastinate_jobs TO pgjobs_enqueuer;
        GRANT SELECT (id, queueing_lock, status) ON procrastinate_jobs TO pgjobs_enqueuer;
        GRANT INSERT ON procrastinate_events TO pgjobs_enqueuer;
        GRANT USAGE ON SEQUENCE procrastinate_jobs_id_seq, procrastinate_events_id_seq
            TO pgjobs_enqueuer;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_worker') THEN
        -- Everything a worker does: claim and finish jobs, heartbeats,
        -- periodic defers, error history, dead letters, breakers, schedules,
        -- retention. Not DDL, and none of the application's own tables.
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO pgjobs_worker',
                       _procrastinate_schema);
        GRANT USAGE ON SCHEMA pgjobs TO pgjobs_worker;
        GRANT SELECT, INSERT, UPDATE, DELETE
            ON procrastinate_jobs, procrastinate_events, procrastinate_workers,
               procrastinate_periodic_defers
            TO pgjobs_worker;
        GRANT USAGE, SELECT
            ON SEQUENCE procrastinate_jobs_id_seq, procrastinate_events_id_seq,
               procrastinate_workers_id_seq, procrastinate_periodic_defers_id_seq
            TO pgjobs_worker;
        IF to_regclass('pgjobs_alembic_version') IS NOT NULL THEN
            -- The worker checks the schema revision at start.
            GRANT SELECT ON pgjobs_alembic_version TO pgjobs_worker;
        END IF;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pgjobs
            TO pgjobs_worker;
        GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA pgjobs TO pgjobs_worker;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pgjobs TO pgjobs_worker;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_monitor') THEN
        -- The monitoring views only: no job arguments, no writes.
        GRANT USAGE ON SCHEMA pgjobs TO pgjobs_monitor;
        GRANT SELECT
            ON pgjobs.queue_stats, pgjobs.task_stats, pgjobs.workers,
               pgjobs.stalled_jobs, pgjobs.breaker_states, pgjobs.health,
               pgjobs.periodic_health, pgjobs.paused_queues
            TO pgjobs_monitor;
    END IF;
END;
$$;

-- pgjobs.health reads pgjobs.xmin_holders() with its caller's right to run
-- it: the roles that read health may, others may not (it is SECURITY
-- DEFINER).
REVOKE EXECUTE ON FUNCTION pgjobs.xmin_holders() FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_monitor') THEN
        GRANT EXECUTE ON FUNCTION pgjobs.xmin_holders() TO pgjobs_monitor;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_worker') THEN
        GRANT EXECUTE ON FUNCTION pgjobs.xmin_holders() TO pgjobs_worker;
    END IF;
END;
$$;
