-- The worker's claim and finish functions without JIT (see
-- sql/schema/50_hot_path.sql): before PostgreSQL 18 the claim's disabled
-- sort made every claim cost more than jit_above_cost, and a server with
-- JIT compiled each one (250-450 ms per claim instead of about 1 ms).
ALTER FUNCTION pgjobs.fetch_jobs(character varying[], bigint, integer, integer)
    SET jit = off;
ALTER FUNCTION pgjobs.finish_jobs(bigint[], procrastinate_job_status[], boolean[], bigint[])
    SET jit = off;
