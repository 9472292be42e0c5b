-- Least-privilege group roles (NOLOGIN): grant them to your login roles,
-- e.g. GRANT pgjobs_monitor TO grafana. Roles are cluster-wide, so they are
-- created only when missing and never dropped by a downgrade; without the
-- CREATEROLE privilege the migration skips them with a notice.
DO $$
DECLARE
    _role text;
BEGIN
    FOREACH _role IN ARRAY ARRAY['pgjobs_enqueuer', 'pgjobs_worker', 'pgjobs_monitor']
    LOOP
        CONTINUE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = _role);
        IF NOT (SELECT rolcreaterole OR rolsuper FROM pg_roles
                 WHERE rolname = current_user) THEN
            RAISE NOTICE 'pgjobs: role % is missing and % may not create it; skipped',
                _role, current_user;
            CONTINUE;
        END IF;
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', _role);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by a concurrent migration
        END;
    END LOOP;
END;
$$;

-- Privileges in this database (the roles may exist without them elsewhere).
DO $$
DECLARE
    _procrastinate_schema text := (SELECT relnamespace::regnamespace::text
                                     FROM pg_class
                                    WHERE oid = 'procrastinate_jobs'::regclass);
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_enqueuer') THEN
        -- Enqueue only: pgjobs.defer_jobs / procrastinate_defer_jobs_v1 and
        -- what their INSERT and its triggers need. No reading of jobs.
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO pgjobs_enqueuer',
                       _procrastinate_schema);
        GRANT USAGE ON SCHEMA pgjobs TO pgjobs_enqueuer;
        GRANT EXECUTE ON FUNCTION pgjobs.defer_jobs(procrastinate_job_to_defer_v1[])
            TO pgjobs_enqueuer;
        GRANT EXECUTE ON FUNCTION procrastinate_defer_jobs_v1(procrastinate_job_to_defer_v1[])
            TO pgjobs_enqueuer;
        GRANT INSERT ON procrastinate_jobs TO pgjobs_enqueuer;
        GRANT SELECT (id, queueing_lock, status) ON procrastinate_jobs TO pgjobs_enqueuer;
        GRANT INSERT ON pgjobs.event_log TO pgjobs_enqueuer;
        GRANT USAGE ON SEQUENCE procrastinate_jobs_id_seq, pgjobs.event_log_id_seq
            TO pgjobs_enqueuer;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_worker') THEN
        -- Everything a worker does: claim and finish jobs, heartbeats,
        -- periodic defers, error history, dead letters, breakers, schedules,
        -- retention. Not DDL, and none of the application's own tables.
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO pgjobs_worker',
                       _procrastinate_schema);
        GRANT USAGE ON SCHEMA pgjobs TO pgjobs_worker;
        GRANT SELECT, INSERT, UPDATE, DELETE
            ON procrastinate_jobs, procrastinate_events, pgjobs.event_log,
               procrastinate_workers, procrastinate_periodic_defers
            TO pgjobs_worker;
        GRANT USAGE, SELECT
            ON SEQUENCE procrastinate_jobs_id_seq, pgjobs.event_log_id_seq,
               procrastinate_workers_id_seq, procrastinate_periodic_defers_id_seq
            TO pgjobs_worker;
        IF to_regclass('pgjobs_alembic_version') IS NOT NULL THEN
            -- The worker checks the schema revision at start.
            GRANT SELECT ON pgjobs_alembic_version TO pgjobs_worker;
        END IF;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pgjobs
            TO pgjobs_worker;
        GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA pgjobs TO pgjobs_worker;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pgjobs TO pgjobs_worker;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_monitor') THEN
        -- The monitoring views only: no job arguments, no writes.
        GRANT USAGE ON SCHEMA pgjobs TO pgjobs_monitor;
        GRANT SELECT
            ON pgjobs.queue_stats, pgjobs.task_stats, pgjobs.workers,
               pgjobs.stalled_jobs, pgjobs.breaker_states, pgjobs.health,
               pgjobs.periodic_health, pgjobs.paused_queues
            TO pgjobs_monitor;
    END IF;
END;
$$;

-- pgjobs.health reads pgjobs.xmin_holders() with its caller's right to run
-- it: the roles that read health may, others may not (it is SECURITY
-- DEFINER).
REVOKE EXECUTE ON FUNCTION pgjobs.xmin_holders() FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_monitor') THEN
        GRANT EXECUTE ON FUNCTION pgjobs.xmin_holders() TO pgjobs_monitor;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgjobs_worker') THEN
        GRANT EXECUTE ON FUNCTION pgjobs.xmin_holders() TO pgjobs_worker;
    END IF;
END;
$$;
