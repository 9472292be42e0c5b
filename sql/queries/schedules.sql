-- Schedules: runtime schedules, code-declared periodic tasks, startup runs
-- and periodic health. Objects are defined in sql/schema/2*.sql.

-- name: schedules_insert --
-- A new schedule; no row when the name is taken.
INSERT INTO pgjobs.schedules
       (name, task_name, cron, interval_seconds, args, queue_name, priority,
        queueing_lock, paused, missed_runs, max_catch_up, expected_interval,
        expected_interval_override, next_run_at)
VALUES (%(schedule_name)s, %(task_name)s, %(cron)s, %(interval_seconds)s, %(args)s,
        %(queue_name)s, %(priority)s, %(queueing_lock)s, %(paused)s,
        %(missed_runs)s, %(max_catch_up)s, %(expected_interval)s,
        %(expected_interval_override)s, %(next_run_at)s)
ON CONFLICT (name) DO NOTHING
RETURNING *;

-- name: schedules_update --
-- Replace a schedule's settings. reset_clock: the timing changed or it was
-- resumed, so the overdue clock starts again now.
UPDATE pgjobs.schedules
   SET task_name = %(task_name)s,
       cron = %(cron)s,
       interval_seconds = %(interval_seconds)s,
       args = %(args)s,
       queue_name = %(queue_name)s,
       priority = %(priority)s,
       queueing_lock = %(queueing_lock)s,
       paused = %(paused)s,
       missed_runs = %(missed_runs)s,
       max_catch_up = %(max_catch_up)s,
       expected_interval = %(expected_interval)s,
       expected_interval_override = %(expected_interval_override)s,
       next_run_at = %(next_run_at)s,
       active_since = CASE WHEN %(reset_clock)s THEN now() ELSE active_since END,
       updated_at = now()
 WHERE name = %(schedule_name)s
RETURNING *;

-- name: schedules_get --
SELECT * FROM pgjobs.schedules WHERE name = %(schedule_name)s;

-- name: schedules_list --
SELECT * FROM pgjobs.schedules ORDER BY name;

-- name: schedules_delete --
WITH schedule AS (
    DELETE FROM pgjobs.schedules WHERE name = %(schedule_name)s RETURNING name
), periodic AS (
    DELETE FROM pgjobs.periodic_tasks WHERE name = %(schedule_name)s RETURNING name
)
SELECT (SELECT count(*) FROM schedule) AS schedules,
       (SELECT count(*) FROM periodic) AS periodic_tasks;

-- name: schedules_run_now --
SELECT schedule_id, tick_at, job_id FROM pgjobs.run_schedule_now(%(schedule_name)s);

-- name: schedules_runs --
-- The latest runs of one schedule, newest first.
SELECT run.tick_at, run.trigger, run.job_id, run.enqueued_at, run.status,
       run.finished_at
  FROM pgjobs.schedule_runs AS run
  JOIN pgjobs.schedules AS schedule ON schedule.id = run.schedule_id
 WHERE schedule.name = %(schedule_name)s
 ORDER BY run.tick_at DESC
 LIMIT %(limit)s;

-- name: schedules_due --
-- Schedules whose next tick has come, with the database clock.
SELECT id, name, cron, interval_seconds, missed_runs, max_catch_up, next_run_at,
       now() AS db_now
  FROM pgjobs.schedules
 WHERE NOT paused AND next_run_at <= now()
 ORDER BY next_run_at
 LIMIT %(limit)s;

-- name: schedules_claim_ticks --
-- Enqueue the ticks of a due schedule if no other worker did (see function).
SELECT tick_at, job_id, trigger
  FROM pgjobs.claim_schedule_ticks(%(schedule_id)s, %(expected_next_run_at)s,
                                   %(ticks)s::timestamptz[], %(triggers)s::text[],
                                   %(next_run_at)s);

-- name: schedules_set_expected_interval --
-- Override (or clear, with NULL) the expected interval of a schedule or a
-- code-declared periodic task.
WITH schedule AS (
    UPDATE pgjobs.schedules
       SET expected_interval_override = %(expected_interval)s, updated_at = now()
     WHERE name = %(schedule_name)s
    RETURNING name
), periodic AS (
    UPDATE pgjobs.periodic_tasks
       SET expected_interval_override = %(expected_interval)s
     WHERE name = %(schedule_name)s
    RETURNING name
)
SELECT (SELECT count(*) FROM schedule) + (SELECT count(*) FROM periodic) AS updated;

-- name: schedules_register_periodic_task --
-- A worker declares one code-declared periodic task (at start).
INSERT INTO pgjobs.periodic_tasks AS p
       (name, task_name, periodic_id, cron, expected_interval)
VALUES (%(schedule_name)s, %(task_name)s, %(periodic_id)s, %(cron)s, %(expected_interval)s)
ON CONFLICT (name) DO UPDATE
   SET task_name = EXCLUDED.task_name,
       periodic_id = EXCLUDED.periodic_id,
       cron = EXCLUDED.cron,
       expected_interval = EXCLUDED.expected_interval,
       registered_at = CASE WHEN p.cron <> EXCLUDED.cron THEN now()
                            ELSE p.registered_at END,
       last_seen_at = now();

-- name: schedules_claim_startup_run --
-- Claim the run-once-after-start task `name` for this worker's deployment and
-- enqueue its job in the same statement; other workers of the deployment
-- join its worker list instead. With a deployment id, it runs once per id;
-- without, again only when no worker of the previous run is alive.
WITH claim AS (
    INSERT INTO pgjobs.startup_runs AS r (name, deployment_id, worker_ids)
    VALUES (%(schedule_name)s, %(deployment_id)s, ARRAY[%(worker_id)s]::bigint[])
    ON CONFLICT (name) DO UPDATE
       SET deployment_id = EXCLUDED.deployment_id,
           worker_ids = EXCLUDED.worker_ids,
           claimed_at = now(),
           job_id = NULL
     WHERE CASE WHEN EXCLUDED.deployment_id IS NOT NULL
                THEN r.deployment_id IS DISTINCT FROM EXCLUDED.deployment_id
                ELSE r.deployment_id IS NOT NULL
                     OR NOT EXISTS (
                        SELECT FROM procrastinate_workers AS w
                         WHERE w.id = ANY (r.worker_ids)
                           AND w.id <> %(worker_id)s
                           AND w.last_heartbeat >= now() - %(alive_within)s::interval)
           END
    RETURNING r.name
), deferred AS (
    SELECT (pgjobs.defer_jobs(%(jobs)s::procrastinate_job_to_defer_v1[]))[1] AS job_id
      FROM claim
), joined AS (
    UPDATE pgjobs.startup_runs AS r
       SET worker_ids = ARRAY(
               SELECT w.id FROM procrastinate_workers AS w
                WHERE w.id = ANY (r.worker_ids)
                  AND w.last_heartbeat >= now() - %(alive_within)s::interval
                  AND w.id <> %(worker_id)s) || %(worker_id)s::bigint
     WHERE r.name = %(schedule_name)s AND NOT EXISTS (SELECT FROM claim)
    RETURNING r.name
)
SELECT (SELECT job_id FROM deferred) AS job_id,
       EXISTS (SELECT FROM claim) AS claimed,
       EXISTS (SELECT FROM joined) AS joined;

-- name: schedules_note_startup_job --
UPDATE pgjobs.startup_runs SET job_id = %(job_id)s WHERE name = %(schedule_name)s;

-- name: schedules_periodic_health --
SELECT name, task_name, kind, expected_interval, last_enqueued_at,
       last_success_at, last_failure_at, last_error, overdue, paused, overdue_at
  FROM pgjobs.periodic_health
 WHERE NOT %(overdue_only)s OR overdue
 ORDER BY name, kind;
