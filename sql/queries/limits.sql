-- Concurrency and rate limits (pgjobs.worker.limits, pgjobs.admin.limits,
-- pgjobs.worker.limit_waits).

-- name: limits_sync --
-- A worker's start: the limits its App's tasks declare.
SELECT pgjobs.sync_declared_limits(%(tasks)s::text[], %(limits)s::jsonb);

-- name: limits_any --
SELECT EXISTS (SELECT FROM pgjobs.effective_task_limits) AS any;

-- name: limits_next_start --
-- In how many seconds the earliest job held back by a rate limit may start
-- (NULL: none is), by the database's clock.
SELECT extract(epoch FROM pgjobs.limits_next_start() - clock_timestamp())::float8
           AS delay_s;

-- name: limits_list --
-- Declared and runtime values, and what is in force, with the usage now:
-- running jobs (concurrency) or starts in the current window (rate), over
-- the whole task (scope 'key': every key together, and the busiest key).
SELECT limits.task_name, limits.scope, limits.kind, limits.key_arg,
       limits.declared_amount,
       extract(epoch FROM limits.declared_period)::float8 AS declared_period_s,
       limits.runtime_amount,
       extract(epoch FROM limits.runtime_period)::float8 AS runtime_period_s,
       limits.updated_at, limits.updated_by,
       coalesce(usage.used, 0)::integer AS used,
       coalesce(usage.busiest, 0)::integer AS busiest,
       (SELECT count(*) FROM procrastinate_jobs AS todo
         WHERE todo.status = 'todo' AND todo.task_name = limits.task_name)::integer
           AS waiting
  FROM pgjobs.task_limits AS limits
  LEFT JOIN pgjobs.effective_task_limits AS lim
         ON lim.task_name = limits.task_name
        AND lim.scope = limits.scope AND lim.kind = limits.kind
  LEFT JOIN LATERAL (
       SELECT sum(per_key.used) AS used, max(per_key.used) AS busiest
         FROM (SELECT slot.limit_key, count(*) AS used
                 FROM pgjobs.limit_slots AS slot
                 JOIN procrastinate_jobs AS doing
                   ON doing.id = slot.job_id AND doing.status = 'doing'
                WHERE limits.kind = 'concurrency'
                  AND slot.task_name = limits.task_name
                GROUP BY slot.limit_key
               UNION ALL
               SELECT start.limit_key, count(*)
                 FROM pgjobs.limit_starts AS start
                WHERE limits.kind = 'rate'
                  AND start.task_name = limits.task_name
                  AND (start.limit_key IS NOT NULL) = (limits.scope = 'key')
                  AND start.started_at > clock_timestamp() - lim.period
                GROUP BY start.limit_key) AS per_key) AS usage ON true
 WHERE %(task_name)s::text IS NULL OR limits.task_name = %(task_name)s
 ORDER BY limits.task_name, limits.scope DESC, limits.kind;

-- name: limits_set --
-- changed: false for a reset of a limit with no runtime value.
SELECT pgjobs.set_task_limit(%(task_name)s, %(scope)s, %(kind)s, %(key_arg)s,
                             %(amount)s, make_interval(secs => %(period_s)s),
                             %(updated_by)s) AS changed;

-- name: limits_declared_key --
-- The argument a task's declared or runtime per-key limits use.
SELECT key_arg FROM pgjobs.task_limits
 WHERE task_name = %(task_name)s AND scope = 'key'
 LIMIT 1;

-- name: limits_reasons --
SELECT pgjobs.job_limit_reasons(%(job_id)s) AS reasons;
