-- 0023 job_deletes, undone: the foreign keys and procrastinate's row
-- trigger back (rows of jobs that no longer exist are deleted first).
DROP TRIGGER pgjobs_jobs_truncated ON procrastinate_jobs;
DROP FUNCTION pgjobs.jobs_truncated();
DROP TRIGGER pgjobs_jobs_deleted ON procrastinate_jobs;
DROP FUNCTION pgjobs.jobs_deleted();
DROP FUNCTION pgjobs.truncate_job_rows();
DROP FUNCTION pgjobs.delete_job_rows(bigint[]);

DELETE FROM pgjobs.event_log AS event
 WHERE NOT EXISTS (SELECT FROM procrastinate_jobs AS job WHERE job.id = event.job_id);
DELETE FROM pgjobs.job_progress AS progress
 WHERE NOT EXISTS (SELECT FROM procrastinate_jobs AS job WHERE job.id = progress.job_id);
DELETE FROM pgjobs.job_deadlines AS deadline
 WHERE NOT EXISTS (SELECT FROM procrastinate_jobs AS job WHERE job.id = deadline.job_id);
DELETE FROM pgjobs.job_traces AS trace
 WHERE NOT EXISTS (SELECT FROM procrastinate_jobs AS job WHERE job.id = trace.job_id);
UPDATE procrastinate_periodic_defers AS periodic SET job_id = NULL
 WHERE periodic.job_id IS NOT NULL
   AND NOT EXISTS (SELECT FROM procrastinate_jobs AS job WHERE job.id = periodic.job_id);

ALTER TABLE pgjobs.event_log ADD CONSTRAINT procrastinate_events_job_id_fkey
    FOREIGN KEY (job_id) REFERENCES procrastinate_jobs (id) ON DELETE CASCADE;
ALTER TABLE pgjobs.job_progress ADD CONSTRAINT job_progress_job_id_fkey
    FOREIGN KEY (job_id) REFERENCES procrastinate_jobs (id) ON DELETE CASCADE;
ALTER TABLE pgjobs.job_deadlines ADD CONSTRAINT job_deadlines_job_id_fkey
    FOREIGN KEY (job_id) REFERENCES procrastinate_jobs (id) ON DELETE CASCADE;
ALTER TABLE pgjobs.job_traces ADD CONSTRAINT job_traces_job_id_fkey
    FOREIGN KEY (job_id) REFERENCES procrastinate_jobs (id) ON DELETE CASCADE;
ALTER TABLE procrastinate_periodic_defers
    ADD CONSTRAINT procrastinate_periodic_defers_job_id_fkey
    FOREIGN KEY (job_id) REFERENCES procrastinate_jobs (id);
CREATE TRIGGER procrastinate_trigger_delete_jobs_v1
    BEFORE DELETE ON procrastinate_jobs
    FOR EACH ROW EXECUTE FUNCTION procrastinate_unlink_periodic_defers_v1();
