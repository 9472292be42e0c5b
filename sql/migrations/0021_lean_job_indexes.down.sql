-- Back to procrastinate's job indexes and the conflict clause before 0021.
DROP INDEX procrastinate_jobs_queueing_lock_idx_v1;
CREATE UNIQUE INDEX procrastinate_jobs_queueing_lock_idx_v1 ON procrastinate_jobs (queueing_lock) WHERE status = 'todo';
DROP INDEX procrastinate_jobs_lock_idx_v1;
CREATE UNIQUE INDEX procrastinate_jobs_lock_idx_v1 ON procrastinate_jobs (lock) WHERE status = 'doing';
CREATE INDEX idx_procrastinate_jobs_worker_not_null ON procrastinate_jobs(worker_id) WHERE worker_id IS NOT NULL AND status = 'doing'::procrastinate_job_status;
CREATE INDEX procrastinate_jobs_id_lock_idx_v1 ON procrastinate_jobs (id, lock) WHERE status = ANY (ARRAY['todo'::procrastinate_job_status, 'doing'::procrastinate_job_status]);

CREATE OR REPLACE FUNCTION pgjobs.defer_jobs(jobs procrastinate_job_to_defer_v1[])
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
        ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING
        RETURNING procrastinate_jobs.id
    )
    SELECT coalesce(array_agg(inserted.id ORDER BY input.ord), '{}')
      INTO _ids
      FROM input LEFT JOIN inserted ON inserted.id = input.id;
    RETURN _ids;
END;
$$;
