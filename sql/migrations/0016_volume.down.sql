-- Back to revision 0015: finished jobs may keep their worker_id again (the
-- worker_id values cleared by the upgrade and since are not restored: the
-- worker that ran a finished job is not recorded anywhere else, except for
-- failed attempts in pgjobs.job_errors), and no xmin_horizon check.

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

DROP VIEW pgjobs.health_xmin_horizon;
DROP FUNCTION pgjobs.xmin_holders();

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

DROP TRIGGER pgjobs_clear_job_worker ON procrastinate_jobs;
DROP FUNCTION pgjobs.clear_job_worker();
