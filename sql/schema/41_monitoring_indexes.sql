-- Finished-attempt events in a time window (queue_stats, task_stats) and
-- retention's age checks: without it, every view scans all events.
CREATE INDEX pgjobs_events_type_at_idx ON pgjobs.event_log (type, at);

-- Waiting, scheduled and running jobs per queue without touching the
-- finished ones.
CREATE INDEX pgjobs_jobs_active_idx ON procrastinate_jobs (queue_name, status, scheduled_at)
    WHERE status IN ('todo', 'doing');
