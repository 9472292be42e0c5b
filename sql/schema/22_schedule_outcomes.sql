-- A finished job of a schedule or of a code-declared periodic task records
-- its outcome there, in the statement that finishes it: health survives the
-- pruning of old jobs. Periodic jobs deferred by procrastinate carry a
-- "timestamp" argument; that and the task name identify them.
-- pgjobs.finish_jobs calls this for its batch; the trigger below for every
-- other statement.
CREATE FUNCTION pgjobs.record_job_outcome(
    p_job_id bigint,
    p_status procrastinate_job_status,
    p_task_name text,
    p_periodic boolean
)
    RETURNS void
    LANGUAGE plpgsql
AS $$
DECLARE
    _failed boolean := p_status = 'failed';
    _error text;
BEGIN
    IF _failed THEN
        SELECT e.error_type || ': ' || e.error_message INTO _error
          FROM pgjobs.job_errors AS e
         WHERE e.job_id = p_job_id
         ORDER BY e.id DESC
         LIMIT 1;
        _error := coalesce(_error, 'job failed');
    END IF;
    WITH finished AS (
        UPDATE pgjobs.schedule_runs AS r
           SET status = p_status::text, finished_at = now()
         WHERE r.job_id = p_job_id
        RETURNING r.schedule_id
    )
    UPDATE pgjobs.schedules AS s
       SET last_success_at = CASE WHEN _failed THEN s.last_success_at ELSE now() END,
           last_failure_at = CASE WHEN _failed THEN now() ELSE s.last_failure_at END,
           last_error = CASE WHEN _failed THEN _error ELSE s.last_error END
      FROM finished
     WHERE s.id = finished.schedule_id;
    IF p_periodic THEN
        UPDATE pgjobs.periodic_tasks AS p
           SET last_success_at = CASE WHEN _failed THEN p.last_success_at ELSE now() END,
               last_failure_at = CASE WHEN _failed THEN now() ELSE p.last_failure_at END,
               last_error = CASE WHEN _failed THEN _error ELSE p.last_error END
         WHERE p.task_name = p_task_name;
    END IF;
END;
$$;

CREATE FUNCTION pgjobs.record_periodic_outcome()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pgjobs.record_job_outcome(
        NEW.id, NEW.status, NEW.task_name, NEW.args ? 'timestamp');
    RETURN NULL;
END;
$$;

CREATE TRIGGER pgjobs_record_periodic_outcome
    AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed') AND OLD.status <> NEW.status
          AND current_setting('pgjobs.batch_events', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION pgjobs.record_periodic_outcome();
