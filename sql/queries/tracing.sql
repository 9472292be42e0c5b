-- pgjobs.tracing: the enqueuer's trace context, stored and read per job.

-- name: tracing_store --
SELECT pgjobs.store_job_traces(%(ids)s::bigint[], %(traceparent)s, %(tracestate)s);

-- name: tracing_job_trace --
SELECT traceparent, tracestate FROM pgjobs.job_trace(%(job_id)s);
