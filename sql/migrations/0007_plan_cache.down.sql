-- Back to the 0006 definitions.

-- PL/pgSQL with the limit inlined: as a SQL function the body is planned
-- with LIMIT as an unknown parameter, and the plan sorts every waiting job
-- on each claim (4 ms at 1,000 waiting, growing with the queue).
CREATE OR REPLACE FUNCTION pgjobs.fetch_jobs(
    target_queue_names character varying[],
    p_worker_id bigint,
    p_limit integer
)
    RETURNS SETOF procrastinate_jobs
    LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY EXECUTE format($sql$
    WITH candidate AS (
        SELECT jobs.id
          FROM procrastinate_jobs AS jobs
         WHERE jobs.status = 'todo'
           AND ($1 IS NULL OR jobs.queue_name = ANY($1))
           AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
           AND (jobs.lock IS NULL
                OR (NOT EXISTS (SELECT 1
                                  FROM procrastinate_jobs AS running
                                 WHERE running.lock = jobs.lock
                                   AND running.status = 'doing')
                    AND jobs.id = (SELECT first.id
                                     FROM procrastinate_jobs AS first
                                    WHERE first.lock = jobs.lock
                                      AND first.status = 'todo'
                                    ORDER BY first.priority DESC, first.id ASC
                                    LIMIT 1)))
         ORDER BY jobs.priority DESC, jobs.id ASC
         LIMIT %s
           FOR UPDATE OF jobs SKIP LOCKED
    )
    UPDATE procrastinate_jobs AS jobs
       SET status = 'doing', worker_id = $2
      FROM candidate
     WHERE jobs.id = candidate.id
    RETURNING jobs.*
    $sql$, greatest(p_limit, 0))
    USING target_queue_names, p_worker_id;
END;
$$;

-- procrastinate_finish_job_v1 for many jobs at once. Returns the ids it
-- finished; a job no longer todo/doing (e.g. rescued meanwhile) is skipped
-- instead of failing the whole batch.
CREATE OR REPLACE FUNCTION pgjobs.finish_jobs(
    p_ids bigint[],
    p_statuses procrastinate_job_status[],
    p_delete boolean[]
)
    RETURNS SETOF bigint
    LANGUAGE sql
AS $$
    WITH finished AS (
        SELECT *
          FROM unnest(p_ids, p_statuses, p_delete) AS f(id, status, delete_job)
         WHERE f.status IN ('succeeded', 'failed', 'aborted')
    ),
    deleted AS (
        DELETE FROM procrastinate_jobs AS jobs
         USING finished
         WHERE finished.delete_job
           AND jobs.id = finished.id
           AND jobs.status IN ('todo', 'doing')
        RETURNING jobs.id
    ),
    updated AS (
        UPDATE procrastinate_jobs AS jobs
           SET status = finished.status,
               abort_requested = false,
               attempts = CASE jobs.status
                              WHEN 'doing' THEN jobs.attempts + 1
                              ELSE jobs.attempts
                          END
          FROM finished
         WHERE NOT finished.delete_job
           AND jobs.id = finished.id
           AND jobs.status IN ('todo', 'doing')
        RETURNING jobs.id
    )
    SELECT id FROM deleted
    UNION ALL
    SELECT id FROM updated;
$$;


CREATE OR REPLACE FUNCTION pgjobs.defer_jobs(jobs procrastinate_job_to_defer_v1[])
    RETURNS bigint[]
    LANGUAGE sql
AS $$
    WITH input AS MATERIALIZED (
        SELECT nextval(pg_get_serial_sequence('procrastinate_jobs', 'id')) AS id,
               job.*
          FROM unnest(jobs) WITH ORDINALITY AS job(
                   queue_name, task_name, priority, lock, queueing_lock, args,
                   scheduled_at, ord)
    ), inserted AS (
        INSERT INTO procrastinate_jobs
               (id, queue_name, task_name, priority, lock, queueing_lock, args,
                scheduled_at)
        SELECT id, queue_name, task_name, priority, lock, queueing_lock, args,
               scheduled_at
          FROM input
         ORDER BY ord
        ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING
        RETURNING id
    )
    SELECT coalesce(array_agg(inserted.id ORDER BY input.ord), '{}')
      FROM input LEFT JOIN inserted ON inserted.id = input.id;
$$;


CREATE OR REPLACE FUNCTION pgjobs.defer_jobs_json(jobs jsonb)
    RETURNS bigint[]
    LANGUAGE sql
AS $$
    SELECT pgjobs.defer_jobs(array(
        SELECT ROW(job ->> 'queue_name', job ->> 'task_name',
                   (job ->> 'priority')::integer, job ->> 'lock',
                   job ->> 'queueing_lock', job -> 'args',
                   (job ->> 'scheduled_at')::timestamptz
               )::procrastinate_job_to_defer_v1
          FROM jsonb_array_elements(jobs) WITH ORDINALITY AS input(job, ord)
         ORDER BY ord));
$$;


DROP TRIGGER procrastinate_trigger_status_events_update_v1 ON procrastinate_jobs;
CREATE TRIGGER procrastinate_trigger_status_events_update_v1
    AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW
    EXECUTE PROCEDURE procrastinate_trigger_function_status_events_update_v1();
