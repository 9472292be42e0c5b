DROP FUNCTION pgjobs.release_unstarted_jobs(bigint, bigint[]);
DROP FUNCTION pgjobs.defer_jobs_json(jsonb);
DROP TRIGGER pgjobs_jobs_inserted ON procrastinate_jobs;
DROP FUNCTION pgjobs.notify_jobs_inserted();
-- procrastinate 3.10's own per-row insert triggers, as schema.sql has them.
CREATE TRIGGER procrastinate_jobs_notify_queue_job_inserted_v1
    AFTER INSERT ON procrastinate_jobs
    FOR EACH ROW WHEN ((new.status = 'todo'::procrastinate_job_status))
    EXECUTE PROCEDURE procrastinate_notify_queue_job_inserted_v1();
CREATE TRIGGER procrastinate_trigger_status_events_insert_v1
    AFTER INSERT ON procrastinate_jobs
    FOR EACH ROW WHEN ((new.status = 'todo'::procrastinate_job_status))
    EXECUTE PROCEDURE procrastinate_trigger_function_status_events_insert_v1();
DROP FUNCTION pgjobs.worker_heartbeat(bigint);
DROP FUNCTION pgjobs.finish_jobs(bigint[], procrastinate_job_status[], boolean[]);
DROP FUNCTION pgjobs.fetch_jobs(character varying[], bigint, integer);
DROP INDEX pgjobs_jobs_lock_rank_idx;
