-- Enqueueing from pgjobs' API: the batch travels as one jsonb array (cheap to
-- send from Python) instead of an array of composites. Same semantics as
-- pgjobs.defer_jobs: one id per input in input order, NULL for a job whose
-- queueing lock is held by a waiting job.
CREATE FUNCTION pgjobs.defer_jobs_json(jobs jsonb)
    RETURNS bigint[]
    LANGUAGE plpgsql
AS $$
BEGIN
    RETURN pgjobs.defer_jobs(array(
        SELECT ROW(job ->> 'queue_name', job ->> 'task_name',
                   (job ->> 'priority')::integer, job ->> 'lock',
                   job ->> 'queueing_lock', job -> 'args',
                   (job ->> 'scheduled_at')::timestamptz
               )::procrastinate_job_to_defer_v1
          FROM jsonb_array_elements(jobs) WITH ORDINALITY AS input(job, ord)
         ORDER BY ord));
END;
$$;
