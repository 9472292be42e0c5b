ALTER FUNCTION pgjobs.fetch_jobs(character varying[], bigint, integer, integer)
    RESET jit;
ALTER FUNCTION pgjobs.finish_jobs(bigint[], procrastinate_job_status[], boolean[], bigint[])
    RESET jit;
