-- Enqueue a batch of jobs. Unlike procrastinate_defer_jobs_v1, a job whose
-- queueing lock is already held by a waiting job is skipped (its slot in the
-- result is NULL) instead of raising: the caller's transaction stays usable
-- and the caller decides whether a duplicate is an error.
-- Ids are drawn before the insert so each input keeps its position.
-- PL/pgSQL so that its plan is cached (a SQL function is planned per call).
CREATE FUNCTION pgjobs.defer_jobs(jobs procrastinate_job_to_defer_v1[])
    RETURNS bigint[]
    LANGUAGE plpgsql
AS $$
DECLARE
    _ids bigint[];
BEGIN
    WITH input AS MATERIALIZED (
        SELECT nextval('procrastinate_jobs_id_seq'::regclass) AS id,
               job.*
          FROM unnest(jobs) WITH ORDINALITY AS job(
                   queue_name, task_name, priority, lock, queueing_lock, args,
                   scheduled_at, ord)
    ), inserted AS (
        INSERT INTO procrastinate_jobs
               (id, queue_name, task_name, priority, lock, queueing_lock, args,
                scheduled_at)
        SELECT input.id, input.queue_name, input.task_name, input.priority,
               input.lock, input.queueing_lock, input.args, input.scheduled_at
          FROM input
         ORDER BY input.ord
        ON CONFLICT (queueing_lock) WHERE status = 'todo' AND queueing_lock IS NOT NULL
            DO NOTHING
        RETURNING procrastinate_jobs.id
    )
    SELECT coalesce(array_agg(inserted.id ORDER BY input.ord), '{}')
      INTO _ids
      FROM input LEFT JOIN inserted ON inserted.id = input.id;
    RETURN _ids;
END;
$$;
