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

-- A claim whose reply was lost (connection cut after the commit) leaves jobs
-- 'doing' on a live worker that never started them. The worker calls this
-- after such a failure: its claimed jobs that it does not run go back to
-- 'todo', with no attempt counted.
CREATE FUNCTION pgjobs.release_unstarted_jobs(p_worker_id bigint, p_running bigint[])
    RETURNS SETOF bigint
    LANGUAGE sql
AS $$
    UPDATE procrastinate_jobs
       SET status = 'todo', worker_id = NULL
     WHERE worker_id = p_worker_id
       AND status = 'doing'
       AND id <> ALL(p_running)
    RETURNING id;
$$;
