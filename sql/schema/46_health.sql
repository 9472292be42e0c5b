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
-- pgjobs.event_log, and claims slow down walking them. One row per
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
 WHERE stat.relid IN ('procrastinate_jobs'::regclass, 'pgjobs.event_log'::regclass)
   AND stat.n_dead_tup > greatest(
           pgjobs.setting('pgjobs.max_dead_rows', '100000')::bigint,
           stat.n_live_tup / 10);
