-- procrastinate's status-event trigger fires once per updated row (a
-- PL/pgSQL call and an INSERT each: about a third of a claim's cost). The
-- worker's batch functions set pgjobs.batch_events for their own statement
-- and insert the same events in one INSERT; every other update (retries,
-- cancellations, procrastinate's own functions) still goes through the
-- trigger.
DROP TRIGGER procrastinate_trigger_status_events_update_v1 ON procrastinate_jobs;
CREATE TRIGGER procrastinate_trigger_status_events_update_v1
    AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW
    WHEN (current_setting('pgjobs.batch_events', true) IS DISTINCT FROM 'on')
    EXECUTE PROCEDURE procrastinate_trigger_function_status_events_update_v1();
