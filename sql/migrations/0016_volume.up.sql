-- Volume (README: Reliability and speed, Monitoring): a finished job keeps
-- no worker_id, so a worker's exit or the pruning of a dead worker no
-- longer rewrites every finished job it ever ran (the foreign key's ON
-- DELETE SET NULL); and pgjobs.health reports what holds the xmin horizon
-- back (check xmin_horizon, threshold pgjobs.max_xmin_age).

-- A finished job keeps no worker_id: worker_id is the worker running the
-- job, and the foreign key's ON DELETE SET NULL would otherwise rewrite
-- every kept finished job a worker ever ran when that worker exits or is
-- pruned (100,000 jobs: 0.5 s and 30-50 MB of WAL per exit, growing with
-- history). pgjobs.finish_jobs clears it itself; this trigger catches every
-- other path (procrastinate's finish, cancel and retry functions, admin
-- updates). Failed attempts keep their worker in pgjobs.job_errors.
CREATE FUNCTION pgjobs.clear_job_worker()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    NEW.worker_id := NULL;
    RETURN NEW;
END;
$$;

CREATE TRIGGER pgjobs_clear_job_worker
    BEFORE INSERT OR UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW
    WHEN (NEW.worker_id IS NOT NULL
          AND NEW.status IN ('succeeded', 'failed', 'cancelled', 'aborted'))
    EXECUTE FUNCTION pgjobs.clear_job_worker();

-- Jobs that finished before this revision: cleared once here, so the next
-- exit of the workers that ran them does not rewrite them. Only worker_id is
-- set: no status trigger fires.
UPDATE procrastinate_jobs
   SET worker_id = NULL
 WHERE worker_id IS NOT NULL
   AND status IN ('succeeded', 'failed', 'cancelled', 'aborted');

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
