-- Monitoring: plain SQL views over procrastinate's tables and pgjobs' own,
-- the indexes that keep them fast with millions of finished jobs, and the
-- least-privilege group roles. Views never expose job arguments.

-- Tunables the views read: a setting of the session, role or database when
-- set (SET pgjobs.stats_window = '1 day'; ALTER DATABASE app SET ...), else
-- the default given here.
CREATE FUNCTION pgjobs.setting(p_name text, p_default text)
    RETURNS text
    LANGUAGE sql
    STABLE
AS $$
    SELECT coalesce(nullif(current_setting(p_name, true), ''), p_default);
$$;

-- Finished-attempt events in a time window (queue_stats, task_stats) and
-- retention's age checks: without it, every view scans all events.
CREATE INDEX pgjobs_events_type_at_idx ON procrastinate_events (type, at);

-- Waiting, scheduled and running jobs per queue without touching the
-- finished ones.
CREATE INDEX pgjobs_jobs_active_idx ON procrastinate_jobs (queue_name, status, scheduled_at)
    WHERE status IN ('todo', 'doing');

-- One row per queue that has waiting, scheduled or running jobs, jobs that
-- finished in the window, or pending dead letters.
CREATE VIEW pgjobs.queue_stats AS
WITH active AS (
    SELECT job.queue_name,
           count(*) FILTER (WHERE job.status = 'todo'
                              AND (job.scheduled_at IS NULL OR job.scheduled_at <= now()))
               AS waiting,
           count(*) FILTER (WHERE job.status = 'todo' AND job.scheduled_at > now())
               AS scheduled,
           count(*) FILTER (WHERE job.status = 'doing') AS running
      FROM procrastinate_jobs AS job
     WHERE job.status IN ('todo', 'doing')
     GROUP BY job.queue_name
), latency AS (
    -- A waiting job has been ready since its run-at time or its last
    -- (re)queueing, whichever is later.
    SELECT job.queue_name,
           max(now() - greatest(job.scheduled_at, queued.at)) AS oldest_waiting
      FROM procrastinate_jobs AS job
      CROSS JOIN LATERAL (
           SELECT max(event.at) AS at
             FROM procrastinate_events AS event
            WHERE event.job_id = job.id
              AND event.type IN ('deferred', 'deferred_for_retry', 'retried')
      ) AS queued
     WHERE job.status = 'todo'
       AND (job.scheduled_at IS NULL OR job.scheduled_at <= now())
     GROUP BY job.queue_name
), finished AS (
    SELECT job.queue_name,
           count(*) FILTER (WHERE event.type = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE event.type = 'failed') AS failed
      FROM procrastinate_events AS event
      JOIN procrastinate_jobs AS job ON job.id = event.job_id
     WHERE event.type IN ('succeeded', 'failed')
       AND event.at >= now() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval
     GROUP BY job.queue_name
), letters AS (
    SELECT letter.queue_name, count(*) AS dead_letters
      FROM pgjobs.dead_letters AS letter
     WHERE letter.replayed_at IS NULL
     GROUP BY letter.queue_name
)
SELECT queue_name::text AS queue_name,
       coalesce(active.waiting, 0) AS waiting,
       coalesce(active.scheduled, 0) AS scheduled,
       coalesce(active.running, 0) AS running,
       coalesce(finished.succeeded, 0) AS succeeded,
       coalesce(finished.failed, 0) AS failed,
       coalesce(letters.dead_letters, 0) AS dead_letters,
       coalesce(extract(epoch FROM latency.oldest_waiting)::double precision, 0)
           AS oldest_waiting_s
  FROM active
  FULL JOIN latency USING (queue_name)
  FULL JOIN finished USING (queue_name)
  FULL JOIN letters USING (queue_name);

-- One row per task that started or ended an attempt in the window.
-- Run time: from an attempt's 'started' event to its end ('succeeded',
-- 'failed', 'deferred_for_retry' or 'aborted'); wait: from the job being
-- ready (queued, scheduled time, retry time) to its 'started' event.
CREATE VIEW pgjobs.task_stats AS
WITH ended AS (
    SELECT job.task_name,
           event.type,
           extract(epoch FROM event.at - started.at)::double precision AS run_s
      FROM procrastinate_events AS event
      JOIN procrastinate_jobs AS job ON job.id = event.job_id
      CROSS JOIN LATERAL (
           SELECT max(s.at) AS at
             FROM procrastinate_events AS s
            WHERE s.job_id = event.job_id AND s.type = 'started' AND s.at <= event.at
      ) AS started
     WHERE event.type IN ('succeeded', 'failed', 'deferred_for_retry', 'aborted')
       AND event.at >= now() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval
), runs AS (
    SELECT task_name,
           count(*) AS runs,
           count(*) FILTER (WHERE type = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE type = 'failed') AS failed,
           count(*) FILTER (WHERE type = 'deferred_for_retry') AS retried,
           count(*) FILTER (WHERE type = 'aborted') AS aborted,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY run_s)
               AS run_percentiles,
           avg(run_s) AS mean_run_s,
           max(run_s) AS max_run_s
      FROM ended
     GROUP BY task_name
), waits AS (
    SELECT job.task_name,
           count(*) AS started,
           avg(extract(epoch FROM event.at - ready.at))::double precision AS mean_wait_s
      FROM procrastinate_events AS event
      JOIN procrastinate_jobs AS job ON job.id = event.job_id
      CROSS JOIN LATERAL (
           SELECT max(r.at) AS at
             FROM procrastinate_events AS r
            WHERE r.job_id = event.job_id
              AND r.type IN ('deferred', 'deferred_for_retry', 'retried', 'scheduled')
              AND r.at <= event.at
      ) AS ready
     WHERE event.type = 'started'
       AND event.at >= now() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval
     GROUP BY job.task_name
)
SELECT task_name::text AS task_name,
       coalesce(waits.started, 0) AS started,
       coalesce(runs.runs, 0) AS runs,
       coalesce(runs.succeeded, 0) AS succeeded,
       coalesce(runs.failed, 0) AS failed,
       coalesce(runs.retried, 0) AS retried,
       coalesce(runs.aborted, 0) AS aborted,
       (runs.failed + runs.retried)::double precision / nullif(runs.runs, 0)
           AS failure_rate,
       runs.run_percentiles[1] AS p50_s,
       runs.run_percentiles[2] AS p95_s,
       runs.run_percentiles[3] AS p99_s,
       runs.mean_run_s AS mean_s,
       runs.max_run_s AS max_s,
       waits.mean_wait_s
  FROM runs
  FULL JOIN waits USING (task_name);

-- Registered workers. alive: heartbeat within pgjobs.stalled_after.
CREATE VIEW pgjobs.workers AS
SELECT worker.id AS worker_id,
       worker.last_heartbeat,
       extract(epoch FROM now() - worker.last_heartbeat)::double precision
           AS heartbeat_age_s,
       worker.last_heartbeat
           >= now() - pgjobs.setting('pgjobs.stalled_after', '30 seconds')::interval
           AS alive,
       (SELECT count(*)
          FROM procrastinate_jobs AS job
         WHERE job.worker_id = worker.id AND job.status = 'doing') AS running_jobs
  FROM procrastinate_workers AS worker;

-- Running jobs whose worker is gone or silent for pgjobs.stalled_after: the
-- workers' stalled-job rescuer retries them (or dead-letters them).
CREATE VIEW pgjobs.stalled_jobs AS
SELECT job.id AS job_id,
       job.task_name::text AS task_name,
       job.queue_name::text AS queue_name,
       job.worker_id,
       job.attempts,
       started.at AS started_at,
       worker.last_heartbeat,
       extract(epoch FROM now() - worker.last_heartbeat)::double precision
           AS heartbeat_age_s
  FROM procrastinate_jobs AS job
  LEFT JOIN procrastinate_workers AS worker ON worker.id = job.worker_id
  CROSS JOIN LATERAL (
       SELECT max(event.at) AS at
         FROM procrastinate_events AS event
        WHERE event.job_id = job.id AND event.type = 'started'
  ) AS started
 WHERE job.status = 'doing'
   AND (worker.id IS NULL
        OR worker.last_heartbeat
           < now() - pgjobs.setting('pgjobs.stalled_after', '30 seconds')::interval);

-- Circuit breaker states without their last error text.
CREATE VIEW pgjobs.breaker_states AS
SELECT breaker.name,
       breaker.state,
       breaker.failure_count,
       breaker.failure_threshold,
       breaker.opened_at,
       breaker.reopens_at
  FROM pgjobs.breakers AS breaker;

-- Overdue periodic tasks as health rows, from pgjobs.periodic_health
-- (revision 0004).
CREATE VIEW pgjobs.health_overdue_schedules AS
SELECT 'overdue_schedule'::text AS "check",
       'schedule ' || schedule.name AS subject,
       format('%s: last success %s, expected every %s',
              schedule.task_name,
              coalesce(schedule.last_success_at::text, 'never'),
              schedule.expected_interval) AS detail,
       'critical'::text AS severity
  FROM pgjobs.periodic_health AS schedule
 WHERE schedule.overdue;

-- One row per problem; no rows when all is well.
CREATE VIEW pgjobs.health AS
SELECT 'stalled_job'::text AS "check",
       'job ' || stalled.job_id AS subject,
       format('%s on queue %s: %s', stalled.task_name, stalled.queue_name,
              CASE WHEN stalled.last_heartbeat IS NULL
                   THEN 'its worker is gone'
                   ELSE format('worker %s silent for %s s', stalled.worker_id,
                               round(stalled.heartbeat_age_s::numeric))
              END) AS detail,
       'critical'::text AS severity
  FROM pgjobs.stalled_jobs AS stalled
UNION ALL
SELECT "check", subject, detail, severity
  FROM pgjobs.health_overdue_schedules
UNION ALL
SELECT 'new_dead_letters',
       'task ' || letters.task_name,
       format('%s new dead letter(s) in the last %s (threshold %s)',
              letters.count,
              pgjobs.setting('pgjobs.dead_letter_window', '1 hour')::interval,
              pgjobs.setting('pgjobs.dead_letter_threshold', '0')::integer),
       'warning'
  FROM (SELECT letter.task_name, count(*) AS count
          FROM pgjobs.dead_letters AS letter
         WHERE letter.replayed_at IS NULL
           AND letter.created_at >= now()
               - pgjobs.setting('pgjobs.dead_letter_window', '1 hour')::interval
         GROUP BY letter.task_name) AS letters
 WHERE letters.count > pgjobs.setting('pgjobs.dead_letter_threshold', '0')::integer
UNION ALL
SELECT 'queue_latency',
       'queue ' || queue.queue_name,
       format('oldest waiting job is %s s old (threshold %s)',
              round(queue.oldest_waiting_s::numeric),
              pgjobs.setting('pgjobs.max_latency', '5 minutes')::interval),
       'warning'
  FROM pgjobs.queue_stats AS queue
 WHERE queue.oldest_waiting_s
       > extract(epoch FROM pgjobs.setting('pgjobs.max_latency', '5 minutes')::interval)
UNION ALL
SELECT 'dead_rows',
       'table ' || stat.relid::regclass::text,
       format('%s dead row(s) beside %s live: %s',
              stat.n_dead_tup, stat.n_live_tup,
              CASE WHEN current_setting('autovacuum') = 'off'
                   THEN 'autovacuum is off on this server; turn it on or VACUUM '
                        || stat.relid::regclass::text || ' (claims slow down as dead rows pile up)'
                   WHEN 'autovacuum_enabled=false' = ANY(class.reloptions)
                   THEN 'autovacuum is disabled on this table; enable it or VACUUM '
                        || stat.relid::regclass::text
                   ELSE 'autovacuum is not keeping up (last autovacuum '
                        || coalesce(stat.last_autovacuum::text, 'never') || ')'
              END),
       'warning'
  FROM pg_stat_user_tables AS stat
  JOIN pg_class AS class ON class.oid = stat.relid
 WHERE stat.relid IN ('procrastinate_jobs'::regclass, 'procrastinate_events'::regclass)
   AND stat.n_dead_tup > greatest(
           pgjobs.setting('pgjobs.max_dead_rows', '100000')::bigint,
           stat.n_live_tup / 10);

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
        GRANT INSERT ON procrastinate_events TO pgjobs_enqueuer;
        GRANT USAGE ON SEQUENCE procrastinate_jobs_id_seq, procrastinate_events_id_seq
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
            ON procrastinate_jobs, procrastinate_events, procrastinate_workers,
               procrastinate_periodic_defers
            TO pgjobs_worker;
        GRANT USAGE, SELECT
            ON SEQUENCE procrastinate_jobs_id_seq, procrastinate_events_id_seq,
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
               pgjobs.periodic_health
            TO pgjobs_monitor;
    END IF;
END;
$$;
