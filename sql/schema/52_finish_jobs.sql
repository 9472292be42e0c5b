-- procrastinate_finish_job_v1 for many jobs at once, with its status events.
-- Returns the jobs it finished (started false); a job no longer todo/doing
-- (e.g. rescued meanwhile) is skipped instead of failing the whole batch.
-- PL/pgSQL so that the plan is cached (a SQL function is planned on every
-- call). No JIT, like pgjobs.fetch_jobs: compiling costs hundreds of ms,
-- running it well under one.
-- p_started_ids: prefetched jobs the worker is about to start (see
-- pgjobs.fetch_jobs): their 'started' events (started_at) are written
-- first, for those still 'doing', and returned (started true); the worker
-- starts only those.
-- A success keeps its events in the job row (started_at, finished_at: no
-- event row, sql/schema/05_job_events.sql); any other end logs its event,
-- after the attempt's 'started' event moved from the row.
-- Those whose queue was paused, or whose start-by deadline passed, while
-- they waited in memory go back to 'todo' instead, with no attempt counted
-- (the next claim expires the late ones), and are returned with started
-- NULL.
-- The outcomes of schedule and periodic-task jobs are recorded here for the
-- whole batch (pgjobs.record_periodic_outcome's row trigger is skipped while
-- pgjobs.batch_events is on): an index probe per job instead of a trigger
-- call per job, and nothing more for jobs that are neither.
-- p_worker_id: the worker writing the outcomes; only jobs still 'doing'
-- under it are finished (after a failover a job id lost in the replication
-- lag window can name another job: its outcome must not land on it).
-- The attempts it starts and ends are counted in pgjobs.task_rollups, one
-- grouped upsert per statement (jobs deleted as they end included).
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
            UPDATE procrastinate_jobs AS doing
               SET started_at = now()
             WHERE doing.id = ANY(p_started_ids)
               AND doing.status = 'doing'
               AND (p_worker_id IS NULL OR doing.worker_id = p_worker_id)
            RETURNING doing.id AS job_id, doing.task_name, doing.deferred_at
        ),
        rolled AS (
            INSERT INTO pgjobs.task_rollups AS rollup
                   (minute, task_name, bucket, shard, started, waited, wait_s)
            SELECT date_trunc('minute', now()), recorded.task_name, -2, _shard,
                   count(*), count(ready.s), coalesce(sum(ready.s), 0)
              FROM recorded
             CROSS JOIN LATERAL (
                   SELECT extract(epoch FROM now() - greatest(max(r.at) FILTER (
                        WHERE r.type IN ('deferred', 'deferred_for_retry', 'retried',
                                         'scheduled')
                          AND r.at <= now()), recorded.deferred_at))::double precision AS s
                     FROM pgjobs.event_log AS r
                    WHERE r.job_id = recorded.job_id) AS ready
             GROUP BY recorded.task_name
             ORDER BY recorded.task_name
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
            SELECT jobs.id, jobs.status AS old_status, jobs.started_at
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
            RETURNING jobs.id, jobs.task_name, finished.status, current.old_status,
                      current.started_at
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
                              END,
                   started_at = CASE WHEN finished.status = 'succeeded'
                                     THEN jobs.started_at END,
                   finished_at = CASE WHEN finished.status = 'succeeded'
                                           AND current.old_status = 'doing'
                                      THEN now() END
              FROM finished, current
             WHERE NOT finished.delete_job
               AND jobs.id = finished.id
               AND current.id = finished.id
            RETURNING jobs.id, jobs.status, current.old_status, jobs.task_name,
                      jobs.args ? 'timestamp' AS periodic, current.started_at
        ),
        -- procrastinate's status events (its row trigger is skipped while
        -- pgjobs.batch_events is on): doing -> succeeded/failed/aborted, and
        -- todo -> succeeded/failed is a cancellation. Not a success (its
        -- finished_at); the attempt's 'started' event first (from its
        -- started_at).
        events AS (
            INSERT INTO pgjobs.event_log (job_id, type, at, from_job)
            SELECT logged.id, logged.type, logged.at, logged.from_job
              FROM (SELECT updated.id, 1 AS n,
                           'started'::procrastinate_job_event_type AS type,
                           updated.started_at AS at, true AS from_job
                      FROM updated
                     WHERE updated.status <> 'succeeded'
                       AND updated.started_at IS NOT NULL
                    UNION ALL
                    SELECT updated.id, 2,
                           CASE WHEN updated.old_status = 'doing'
                                THEN updated.status::text
                                ELSE 'cancelled'
                           END::procrastinate_job_event_type,
                           now(), NULL
                      FROM updated
                     WHERE (updated.old_status = 'doing'
                            OR updated.status IN ('succeeded', 'failed'))
                       AND NOT (updated.old_status = 'doing'
                                AND updated.status = 'succeeded')) AS logged
             ORDER BY logged.id, logged.n
        ),
        -- Their run times: since each one's 'started' event (its started_at;
        -- logged for a job started before migration 0024 or by
        -- procrastinate's own functions). Every probe of pgjobs.event_log
        -- here and below is by job_id alone, the rest filtered: a condition
        -- on type and at could make a generic plan walk the (type, at) index
        -- through every event instead.
        ended AS (
            SELECT attempt.task_name, attempt.status,
                   extract(epoch FROM now() - coalesce(
                       attempt.started_at,
                       (SELECT max(s.at) FILTER (WHERE s.type = 'started' AND s.at <= now())
                          FROM pgjobs.event_log AS s
                         WHERE s.job_id = attempt.id)))::double precision AS s
              FROM (SELECT updated.id, updated.task_name, updated.status,
                           updated.started_at
                      FROM updated WHERE updated.old_status = 'doing'
                    UNION ALL
                    SELECT deleted.id, deleted.task_name, deleted.status,
                           deleted.started_at
                      FROM deleted WHERE deleted.old_status = 'doing') AS attempt
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
