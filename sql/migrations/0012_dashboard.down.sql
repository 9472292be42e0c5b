DROP INDEX pgjobs_jobs_ended_badly_idx;
DROP TABLE pgjobs.audit_log;
