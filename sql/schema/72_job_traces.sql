-- Tracing (pgjobs.tracing, pgjobs[otel]): the enqueuer's W3C trace context,
-- one row per job enqueued while a span was active. A side table, so
-- procrastinate's rows and payloads stay as they are; gone with its job.

CREATE TABLE pgjobs.job_traces (
    job_id bigint PRIMARY KEY REFERENCES procrastinate_jobs (id) ON DELETE CASCADE,
    traceparent text NOT NULL,
    tracestate text
);

-- SECURITY DEFINER: callable by any role that enqueues or works (functions
-- are executable by PUBLIC), with no grant on the table itself.
CREATE FUNCTION pgjobs.store_job_traces(
    p_ids bigint[], p_traceparent text, p_tracestate text
) RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pgjobs, public
AS $$
    INSERT INTO pgjobs.job_traces (job_id, traceparent, tracestate)
    SELECT id, p_traceparent, p_tracestate
      FROM unnest(p_ids) AS id
     WHERE id IS NOT NULL
    ON CONFLICT (job_id) DO NOTHING;
$$;

CREATE FUNCTION pgjobs.job_trace(p_job_id bigint)
RETURNS TABLE (traceparent text, tracestate text)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pgjobs, public
AS $$
    SELECT traceparent, tracestate FROM pgjobs.job_traces WHERE job_id = p_job_id;
$$;
