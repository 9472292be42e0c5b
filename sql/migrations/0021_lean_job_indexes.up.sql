-- Lean job indexes (issue 18 item 5): procrastinate's job indexes that
-- pgjobs never reads go, and the unique lock indexes leave out the jobs
-- without a lock (sql/schema/04_job_indexes.sql). About 5 index entries
-- fewer per job's life.

-- (id, lock) over waiting and running jobs served procrastinate's lock
-- anti-join; pgjobs.fetch_jobs probes pgjobs_jobs_lock_rank_idx and
-- procrastinate_jobs_lock_idx_v1 instead.
DROP INDEX procrastinate_jobs_id_lock_idx_v1;

-- pgjobs_jobs_worker_id_idx (02_job_worker_id.sql) has the same key over a
-- superset of its rows (every job with a worker, not only running ones).
DROP INDEX idx_procrastinate_jobs_worker_not_null;

-- The unique lock indexes without the jobs that have no lock (most jobs):
-- NULLs never conflict, and every lookup (lock = x) implies lock IS NOT
-- NULL, so uniqueness and the probes are unchanged. The names stay:
-- procrastinate recognises a queueing-lock conflict by its index name.
DROP INDEX procrastinate_jobs_lock_idx_v1;
CREATE UNIQUE INDEX procrastinate_jobs_lock_idx_v1 ON procrastinate_jobs (lock)
    WHERE status = 'doing' AND lock IS NOT NULL;

DROP INDEX procrastinate_jobs_queueing_lock_idx_v1;
CREATE UNIQUE INDEX procrastinate_jobs_queueing_lock_idx_v1
    ON procrastinate_jobs (queueing_lock)
    WHERE status = 'todo' AND queueing_lock IS NOT NULL;

-- The queueing-lock conflict names the new index's predicate.
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
