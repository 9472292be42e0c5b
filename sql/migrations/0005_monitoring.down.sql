-- Undo 0005. The group roles stay: they are cluster-wide and other
-- databases may use them; only their privileges in this database go.
DO $$
DECLARE
    _procrastinate_schema text := (SELECT relnamespace::regnamespace::text
                                     FROM pg_class
                                    WHERE oid = 'procrastinate_jobs'::regclass);
    _role text;
BEGIN
    FOREACH _role IN ARRAY ARRAY['pgjobs_enqueuer', 'pgjobs_worker', 'pgjobs_monitor']
    LOOP
        CONTINUE WHEN NOT EXISTS (SELECT FROM pg_roles WHERE rolname = _role);
        EXECUTE format('REVOKE ALL ON procrastinate_jobs, procrastinate_events, '
                       'procrastinate_workers, procrastinate_periodic_defers FROM %I',
                       _role);
        EXECUTE format('REVOKE ALL ON SEQUENCE procrastinate_jobs_id_seq, '
                       'procrastinate_events_id_seq, procrastinate_workers_id_seq, '
                       'procrastinate_periodic_defers_id_seq FROM %I', _role);
        EXECUTE format('REVOKE ALL ON FUNCTION '
                       'procrastinate_defer_jobs_v1(procrastinate_job_to_defer_v1[]) '
                       'FROM %I', _role);
        IF to_regclass('pgjobs_alembic_version') IS NOT NULL THEN
            EXECUTE format('REVOKE ALL ON pgjobs_alembic_version FROM %I', _role);
        END IF;
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA pgjobs FROM %I', _role);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgjobs FROM %I', _role);
        EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgjobs FROM %I', _role);
        EXECUTE format('REVOKE ALL ON SCHEMA pgjobs FROM %I', _role);
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %I', _procrastinate_schema, _role);
    END LOOP;
END;
$$;

DROP VIEW pgjobs.health;
DROP VIEW pgjobs.health_overdue_schedules;
DROP VIEW pgjobs.breaker_states;
DROP VIEW pgjobs.stalled_jobs;
DROP VIEW pgjobs.workers;
DROP VIEW pgjobs.task_stats;
DROP VIEW pgjobs.queue_stats;
DROP INDEX pgjobs_jobs_active_idx;
DROP INDEX pgjobs_events_type_at_idx;
DROP FUNCTION pgjobs.setting(text, text);
