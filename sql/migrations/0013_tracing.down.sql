DROP FUNCTION pgjobs.job_trace(bigint);
DROP FUNCTION pgjobs.store_job_traces(bigint[], text, text);
DROP TABLE pgjobs.job_traces;
