-- 0024 job_runs, undone: the events kept in job rows go into the log (in
-- order, not counted again in pgjobs.task_rollups), then the columns go.
SELECT set_config('pgjobs.batch_events', 'on', true);
INSERT INTO pgjobs.event_log (job_id, type, at)
SELECT job.id, kept.type, kept.at
  FROM procrastinate_jobs AS job
 CROSS JOIN LATERAL (VALUES (1, 'started'::procrastinate_job_event_type, job.started_at),
                            (2, 'succeeded'::procrastinate_job_event_type, job.finished_at))
       AS kept(n, type, at)
 WHERE kept.at IS NOT NULL
 ORDER BY job.id, kept.n;
SELECT set_config('pgjobs.batch_events', 'off', true);

DROP TRIGGER pgjobs_log_job_events ON procrastinate_jobs;
DROP FUNCTION pgjobs.log_job_events();

CREATE OR REPLACE VIEW procrastinate_events AS
SELECT log.id, log.job_id, log.type, log.at
  FROM pgjobs.event_log AS log
UNION ALL
SELECT job.id - 4611686018427387904, job.id, 'deferred'::procrastinate_job_event_type,
       job.deferred_at
  FROM procrastinate_jobs AS job
 WHERE job.deferred_at IS NOT NULL;

CREATE OR REPLACE FUNCTION pgjobs.write_procrastinate_events()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.id >= 0 AND NEW.type <> 'deferred' THEN
        UPDATE pgjobs.event_log
           SET job_id = NEW.job_id, type = NEW.type, at = NEW.at
         WHERE id = OLD.id;
        NEW.id := OLD.id;
        RETURN NEW;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF OLD.id < 0 THEN
            UPDATE procrastinate_jobs SET deferred_at = NULL WHERE id = OLD.job_id;
        ELSE
            DELETE FROM pgjobs.event_log WHERE id = OLD.id;
        END IF;
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
    END IF;
    IF NEW.type = 'deferred' THEN
        UPDATE procrastinate_jobs SET deferred_at = NEW.at WHERE id = NEW.job_id;
        IF NOT FOUND THEN
            RAISE foreign_key_violation USING
                MESSAGE = format('job %s does not exist', NEW.job_id);
        END IF;
        NEW.id := NEW.job_id - 4611686018427387904;
    ELSE
        INSERT INTO pgjobs.event_log (job_id, type, at)
        VALUES (NEW.job_id, NEW.type, NEW.at)
        RETURNING id INTO NEW.id;
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE VIEW pgjobs.queue_stats AS
WITH active AS (
    SELECT job.queue_name,
           count(*) FILTER (WHERE job.status = 'todo'
                              AND (job.scheduled_at IS NULL OR job.scheduled_at <= (SELECT pgjobs.as_of())))
               AS waiting,
           count(*) FILTER (WHERE job.status = 'todo' AND job.scheduled_at > (SELECT pgjobs.as_of()))
               AS scheduled,
           count(*) FILTER (WHERE job.status = 'doing') AS running
      FROM procrastinate_jobs AS job
     WHERE job.status IN ('todo', 'doing')
     GROUP BY job.queue_name
), latency AS (
    -- A waiting job has been ready since its run-at time or its last
    -- (re)queueing, whichever is later.
    SELECT job.queue_name,
           max((SELECT pgjobs.as_of()) - greatest(job.scheduled_at, queued.at)) AS oldest_waiting
      FROM procrastinate_jobs AS job
      CROSS JOIN LATERAL (
           SELECT max(event.at) AS at
             FROM procrastinate_events AS event
            WHERE event.job_id = job.id
              AND event.type IN ('deferred', 'deferred_for_retry', 'retried')
      ) AS queued
     WHERE job.status = 'todo'
       AND (job.scheduled_at IS NULL OR job.scheduled_at <= (SELECT pgjobs.as_of()))
     GROUP BY job.queue_name
), finished AS (
    SELECT job.queue_name,
           count(*) FILTER (WHERE event.type = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE event.type = 'failed') AS failed
      FROM pgjobs.event_log AS event
      JOIN procrastinate_jobs AS job ON job.id = event.job_id
     WHERE event.type IN ('succeeded', 'failed')
       -- as_of() called, not sub-selected: the planner folds it to estimate
       -- the window's rows (an InitPlan is a blind 1/3: a hash join over
       -- every job instead of the (type, at) index).
       AND event.at >= pgjobs.as_of() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval
     GROUP BY job.queue_name
), letters AS (
    SELECT letter.queue_name, count(*) AS dead_letters
      FROM pgjobs.dead_letters AS letter
     WHERE letter.replayed_at IS NULL
     GROUP BY letter.queue_name
), expirations AS (
    SELECT job.queue_name::text AS queue_name, count(*) AS expired
      FROM pgjobs.job_deadlines AS deadline
      JOIN procrastinate_jobs AS job ON job.id = deadline.job_id
     WHERE deadline.expired_at
           >= pgjobs.as_of() - pgjobs.setting('pgjobs.stats_window', '1 hour')::interval
     GROUP BY job.queue_name
), paused AS (
    SELECT paused.queue_name, true AS paused FROM pgjobs.paused_queues AS paused
)
SELECT queue_name::text AS queue_name,
       coalesce(active.waiting, 0) AS waiting,
       coalesce(active.scheduled, 0) AS scheduled,
       coalesce(active.running, 0) AS running,
       coalesce(finished.succeeded, 0) AS succeeded,
       coalesce(finished.failed, 0) AS failed,
       coalesce(letters.dead_letters, 0) AS dead_letters,
       coalesce(extract(epoch FROM latency.oldest_waiting)::double precision, 0)
           AS oldest_waiting_s,
       coalesce(paused.paused, false) AS paused,
       coalesce(expirations.expired, 0) AS expired
  FROM active
  FULL JOIN latency USING (queue_name)
  FULL JOIN finished USING (queue_name)
  FULL JOIN letters USING (queue_name)
  FULL JOIN expirations USING (queue_name)
  FULL JOIN paused USING (queue_name);

CREATE OR REPLACE VIEW pgjobs.stalled_jobs AS
SELECT job.id AS job_id,
       job.task_name::text AS task_name,
       job.queue_name::text AS queue_name,
       job.worker_id,
       job.attempts,
       started.at AS started_at,
       worker.last_heartbeat,
       extract(epoch FROM (SELECT pgjobs.as_of()) - worker.last_heartbeat)::double precision
           AS heartbeat_age_s
  FROM procrastinate_jobs AS job
  LEFT JOIN procrastinate_workers AS worker ON worker.id = job.worker_id
  CROSS JOIN LATERAL (
       SELECT max(event.at) AS at
         FROM pgjobs.event_log AS event
        WHERE event.job_id = job.id AND event.type = 'started'
  ) AS started
 WHERE job.status = 'doing'
   AND (worker.id IS NULL
        OR worker.last_heartbeat
           < (SELECT pgjobs.as_of()) - pgjobs.setting('pgjobs.stalled_after', '30 seconds')::interval);

CREATE OR REPLACE FUNCTION pgjobs.fetch_jobs(
    target_queue_names character varying[],
    p_worker_id bigint,
    p_limit integer,
    p_start integer DEFAULT NULL
)
    RETURNS SETOF procrastinate_jobs
    LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan
    SET enable_sort = off
    SET enable_seqscan = off
    SET jit = off
AS $$
DECLARE
    _queues character varying[] := target_queue_names;
    _paused character varying[];
    _deadlines boolean;
    _limited character varying[];
    _unlimited character varying[];
    _lim record;
    _room integer;
    _budget integer;
    _key_budget integer;
    _key text;
    _full text[];
    _now timestamptz;
    _n integer;
    _taken integer := 0;
    -- Where the per-key walk is: the place of the last key's first job.
    _rank bigint;
    _at bigint;
    _held boolean := false;
BEGIN
    SELECT array_agg(paused.queue_name::character varying) INTO _paused
      FROM pgjobs.paused_queues AS paused;
    IF _paused IS NOT NULL AND _queues IS NOT NULL THEN
        _queues := ARRAY(SELECT unnest(_queues) EXCEPT SELECT unnest(_paused));
        _paused := NULL;
        IF cardinality(_queues) = 0 THEN
            RETURN;
        END IF;
    END IF;
    _deadlines := EXISTS (SELECT FROM pgjobs.job_deadlines AS deadline
                           WHERE deadline.expired_at IS NULL
                             AND deadline.expires_at <= now());
    IF _deadlines THEN
        PERFORM pgjobs.expire_jobs(100);
    END IF;
    -- Limits (sql/schema/36_flow_limits.sql): none in force, the claim at the
    -- end as it was; else the limited branch first.
    SELECT array_agg(DISTINCT lim.task_name::character varying) INTO _limited
      FROM pgjobs.effective_task_limits AS lim;
    PERFORM set_config('pgjobs.batch_events', 'on', true);
    IF _limited IS NOT NULL THEN
        -- Every statement below reads one task's jobs from
        -- pgjobs_jobs_task_rank_idx: the task as a range, and the task first in
        -- the order, because a generic plan takes a task for 1/n of the jobs and
        -- would walk the priority index instead, through every other task's jobs.
        -- Limited tasks first, one at a time: their limit rows locked (in task
        -- order: no deadlock), then what runs and what started in the window
        -- counted, each statement with a fresh snapshot (plpgsql, read
        -- committed: it sees what the claim that held the lock before
        -- committed), then up to the budget claimed from the task's own index.
        -- Limited jobs are never prefetched: their claim is their start.
        _room := coalesce(p_start, p_limit);
        FOR _lim IN
            SELECT lim.task_name,
                   max(lim.amount) FILTER (WHERE lim.scope = 'task'
                                             AND lim.kind = 'concurrency') AS task_running,
                   max(lim.amount) FILTER (WHERE lim.scope = 'task'
                                             AND lim.kind = 'rate') AS task_rate,
                   max(lim.period) FILTER (WHERE lim.scope = 'task'
                                             AND lim.kind = 'rate') AS task_period,
                   max(lim.key_arg) FILTER (WHERE lim.scope = 'key') AS key_arg,
                   max(lim.amount) FILTER (WHERE lim.scope = 'key'
                                             AND lim.kind = 'concurrency') AS key_running,
                   max(lim.amount) FILTER (WHERE lim.scope = 'key'
                                             AND lim.kind = 'rate') AS key_rate,
                   max(lim.period) FILTER (WHERE lim.scope = 'key'
                                             AND lim.kind = 'rate') AS key_period
              FROM pgjobs.effective_task_limits AS lim
             GROUP BY lim.task_name
             ORDER BY lim.task_name
        LOOP
            IF _room <= 0 THEN
                _held := true;
                EXIT;
            END IF;
            CONTINUE WHEN NOT EXISTS (
                SELECT FROM procrastinate_jobs AS todo
                 WHERE todo.status = 'todo'
                   AND todo.task_name >= _lim.task_name
                   AND todo.task_name <= _lim.task_name
                   AND (_queues IS NULL OR todo.queue_name = ANY(_queues)));
            _held := true;
            PERFORM FROM pgjobs.task_limits AS limits
              WHERE limits.task_name = _lim.task_name
              ORDER BY limits.scope, limits.kind
                FOR UPDATE;
            _now := clock_timestamp();
            IF _lim.task_running IS NOT NULL OR _lim.key_running IS NOT NULL THEN
                DELETE FROM pgjobs.limit_slots AS slot
                 WHERE slot.task_name = _lim.task_name
                   AND NOT EXISTS (SELECT FROM procrastinate_jobs AS doing
                                    WHERE doing.id = slot.job_id
                                      AND doing.status = 'doing');
            END IF;
            IF _lim.task_rate IS NOT NULL OR _lim.key_rate IS NOT NULL THEN
                DELETE FROM pgjobs.limit_starts AS start
                 WHERE start.task_name = _lim.task_name
                   AND start.started_at <= _now - greatest(
                           coalesce(_lim.task_period, interval '0'),
                           coalesce(_lim.key_period, interval '0'));
            END IF;
            _budget := _room;
            IF _lim.task_running IS NOT NULL THEN
                _budget := least(_budget, _lim.task_running
                    - (SELECT count(*) FROM pgjobs.limit_slots AS slot
                        WHERE slot.task_name = _lim.task_name)::integer);
            END IF;
            IF _lim.task_rate IS NOT NULL THEN
                _budget := least(_budget, _lim.task_rate
                    - (SELECT count(*) FROM pgjobs.limit_starts AS start
                        WHERE start.task_name = _lim.task_name
                          AND start.limit_key IS NULL
                          AND start.started_at > _now - _lim.task_period)::integer);
            END IF;
            _full := '{}';
            _rank := -9223372036854775808;
            _at := -1;
            -- Per key: keys in the order of their first waiting job, each given
            -- what its own limits leave, so a full key never holds back the
            -- others; each search for the next key, and the claim of a key's
            -- jobs, starts at the last key's first job (a row comparison on
            -- the index), so a claim walks the held-back jobs once. No
            -- per-key limit: one pass with _key NULL.
            WHILE _budget > 0 LOOP
                _key := NULL;
                _key_budget := _budget;
                IF _lim.key_arg IS NOT NULL THEN
                    SELECT coalesce(todo.args ->> _lim.key_arg, ''),
                           -todo.priority::bigint, todo.id
                      INTO _key, _rank, _at
                      FROM procrastinate_jobs AS todo
                     WHERE (todo.task_name, -todo.priority::bigint, todo.id)
                           > (_lim.task_name, _rank, _at)
                       AND todo.task_name <= _lim.task_name
                       AND coalesce(todo.args ->> _lim.key_arg, '') <> ALL(_full)
                       AND todo.status = 'todo'
                       AND (_queues IS NULL OR todo.queue_name = ANY(_queues))
                       AND (_paused IS NULL OR todo.queue_name <> ALL(_paused))
                       AND (todo.scheduled_at IS NULL OR todo.scheduled_at <= now())
                       AND (NOT _deadlines
                            OR (SELECT 1
                                  FROM pgjobs.job_deadlines AS deadline
                                 WHERE deadline.job_id = todo.id
                                   AND deadline.expires_at <= now()
                                 LIMIT 1) IS NULL)
                       AND (todo.lock IS NULL
                            OR ((SELECT 1
                                   FROM procrastinate_jobs AS running
                                  WHERE running.lock = todo.lock
                                    AND running.status = 'doing'
                                  LIMIT 1) IS NULL
                                AND todo.id = (SELECT first.id
                                                 FROM procrastinate_jobs AS first
                                                WHERE first.lock = todo.lock
                                                  AND first.status = 'todo'
                                                ORDER BY first.priority DESC, first.id ASC
                                                LIMIT 1)))
                     ORDER BY todo.task_name, -todo.priority::bigint, todo.id
                     LIMIT 1;
                    EXIT WHEN NOT FOUND;
                    _full := _full || _key;
                    IF _lim.key_running IS NOT NULL THEN
                        _key_budget := least(_key_budget, _lim.key_running
                            - (SELECT count(*) FROM pgjobs.limit_slots AS slot
                                WHERE slot.task_name = _lim.task_name
                                  AND slot.limit_key = _key)::integer);
                    END IF;
                    IF _lim.key_rate IS NOT NULL THEN
                        _key_budget := least(_key_budget, _lim.key_rate
                            - (SELECT count(*) FROM pgjobs.limit_starts AS start
                                WHERE start.task_name = _lim.task_name
                                  AND start.limit_key = _key
                                  AND start.started_at > _now - _lim.key_period)::integer);
                    END IF;
                    CONTINUE WHEN _key_budget <= 0;
                END IF;
                RETURN QUERY
                WITH claimed AS (
                    UPDATE procrastinate_jobs AS jobs
                       SET status = 'doing', worker_id = p_worker_id
                     WHERE jobs.id = ANY(ARRAY(
                        SELECT todo.id
                          FROM procrastinate_jobs AS todo
                         WHERE (todo.task_name, -todo.priority::bigint, todo.id)
                               >= (_lim.task_name, _rank, _at)
                           AND todo.task_name <= _lim.task_name
                           AND (_key IS NULL
                                OR coalesce(todo.args ->> _lim.key_arg, '') = _key)
                           AND todo.status = 'todo'
                           AND (_queues IS NULL OR todo.queue_name = ANY(_queues))
                           AND (_paused IS NULL OR todo.queue_name <> ALL(_paused))
                           AND (todo.scheduled_at IS NULL OR todo.scheduled_at <= now())
                           AND (NOT _deadlines
                                OR (SELECT 1
                                      FROM pgjobs.job_deadlines AS deadline
                                     WHERE deadline.job_id = todo.id
                                       AND deadline.expires_at <= now()
                                     LIMIT 1) IS NULL)
                           AND (todo.lock IS NULL
                                OR ((SELECT 1
                                       FROM procrastinate_jobs AS running
                                      WHERE running.lock = todo.lock
                                        AND running.status = 'doing'
                                      LIMIT 1) IS NULL
                                    AND todo.id = (SELECT first.id
                                                     FROM procrastinate_jobs AS first
                                                    WHERE first.lock = todo.lock
                                                      AND first.status = 'todo'
                                                    ORDER BY first.priority DESC, first.id ASC
                                                    LIMIT 1)))
                         ORDER BY todo.task_name, -todo.priority::bigint, todo.id
                         LIMIT _key_budget
                           FOR UPDATE OF todo SKIP LOCKED))
                    RETURNING jobs.*
                ), started AS (
                    INSERT INTO pgjobs.event_log (job_id, type)
                    SELECT claimed.id, 'started'::procrastinate_job_event_type
                      FROM claimed
                    RETURNING event_log.job_id
                ), rolled AS (
                    -- Their starts and waits (since each job's last ready event) in
                    -- pgjobs.task_rollups, one row per task.
                    INSERT INTO pgjobs.task_rollups AS rollup
                           (minute, task_name, bucket, shard, started, waited, wait_s)
                    SELECT date_trunc('minute', now()), claimed.task_name, -2, pg_backend_pid() % 4,
                           count(*), count(ready.s), coalesce(sum(ready.s), 0)
                      FROM started
                      JOIN claimed ON claimed.id = started.job_id
                     CROSS JOIN LATERAL (
                           SELECT extract(epoch FROM now() - greatest(max(r.at) FILTER (
                                WHERE r.type IN ('deferred', 'deferred_for_retry', 'retried',
                                                 'scheduled')
                                  AND r.at <= now()), claimed.deferred_at))::double precision AS s
                             FROM pgjobs.event_log AS r
                            WHERE r.job_id = claimed.id) AS ready
                     GROUP BY claimed.task_name
                     ORDER BY claimed.task_name
                    ON CONFLICT (minute, task_name, bucket, shard) DO UPDATE
                       SET started = rollup.started + excluded.started,
                           waited = rollup.waited + excluded.waited,
                           wait_s = rollup.wait_s + excluded.wait_s
                ), slots AS (
                    INSERT INTO pgjobs.limit_slots (job_id, task_name, limit_key)
                    SELECT claimed.id, _lim.task_name, _key
                      FROM claimed
                     WHERE _lim.task_running IS NOT NULL OR _lim.key_running IS NOT NULL
                    ON CONFLICT (job_id) DO UPDATE
                       SET task_name = excluded.task_name, limit_key = excluded.limit_key
                ), starts AS (
                    INSERT INTO pgjobs.limit_starts (task_name, limit_key, started_at)
                    SELECT _lim.task_name, NULL::text, _now
                      FROM claimed WHERE _lim.task_rate IS NOT NULL
                    UNION ALL
                    SELECT _lim.task_name, _key, _now
                      FROM claimed WHERE _lim.key_rate IS NOT NULL
                )
                SELECT * FROM claimed;
                GET DIAGNOSTICS _n = ROW_COUNT;
                _budget := _budget - _n;
                _room := _room - _n;
                _taken := _taken + _n;
                EXIT WHEN _key IS NULL;
            END LOOP;
        END LOOP;
        IF _taken > 0 THEN
            -- No prefetch in a claim that took limited jobs: all it returns
            -- starts now.
            p_limit := greatest(coalesce(p_start, p_limit) - _taken, 0);
            p_start := NULL;
        END IF;
        IF _held THEN
            -- Limited jobs wait: the other tasks' names with waiting jobs (a
            -- skip scan of pgjobs_jobs_task_rank_idx, a probe per task), the
            -- first p_limit candidates of each from the same index, then the
            -- first p_limit of those, so held-back jobs are never walked. None
            -- waits: the claim below (which skips the limited tasks' jobs
            -- enqueued meanwhile).
            _unlimited := ARRAY(
                WITH RECURSIVE names AS (
                    (SELECT todo.task_name
                       FROM procrastinate_jobs AS todo
                      WHERE todo.status = 'todo'
                      ORDER BY todo.task_name
                      LIMIT 1)
                    UNION ALL
                    SELECT (SELECT todo.task_name
                              FROM procrastinate_jobs AS todo
                             WHERE todo.status = 'todo'
                               AND todo.task_name > names.task_name
                             ORDER BY todo.task_name
                             LIMIT 1)
                      FROM names
                     WHERE names.task_name IS NOT NULL
                )
                SELECT names.task_name FROM names
                 WHERE names.task_name IS NOT NULL
                   AND names.task_name <> ALL(_limited));
            RETURN QUERY
            WITH claimed AS (
                UPDATE procrastinate_jobs AS jobs
                   SET status = 'doing', worker_id = p_worker_id
                 WHERE jobs.id = ANY(ARRAY(
                    SELECT todo.id
                      FROM procrastinate_jobs AS todo
                     WHERE todo.id = ANY(ARRAY(
                            SELECT candidate.id
                              FROM unnest(_unlimited) AS task(name)
                             CROSS JOIN LATERAL (
                                SELECT todo.id, todo.priority
                                  FROM procrastinate_jobs AS todo
                                 WHERE todo.task_name >= task.name
                                   AND todo.task_name <= task.name
                                   AND todo.status = 'todo'
                                   AND (_queues IS NULL OR todo.queue_name = ANY(_queues))
                                   AND (_paused IS NULL OR todo.queue_name <> ALL(_paused))
                                   AND (todo.scheduled_at IS NULL OR todo.scheduled_at <= now())
                                   AND (NOT _deadlines
                                        OR (SELECT 1
                                              FROM pgjobs.job_deadlines AS deadline
                                             WHERE deadline.job_id = todo.id
                                               AND deadline.expires_at <= now()
                                             LIMIT 1) IS NULL)
                                   AND (todo.lock IS NULL
                                        OR ((SELECT 1
                                               FROM procrastinate_jobs AS running
                                              WHERE running.lock = todo.lock
                                                AND running.status = 'doing'
                                              LIMIT 1) IS NULL
                                            AND todo.id = (SELECT first.id
                                                             FROM procrastinate_jobs AS first
                                                            WHERE first.lock = todo.lock
                                                              AND first.status = 'todo'
                                                            ORDER BY first.priority DESC, first.id ASC
                                                            LIMIT 1)))
                                 ORDER BY todo.task_name, -todo.priority::bigint, todo.id
                                 LIMIT greatest(p_limit, 0)) AS candidate
                             ORDER BY candidate.priority DESC, candidate.id ASC
                             LIMIT greatest(p_limit, 0)))
                       AND todo.status = 'todo'
                       FOR UPDATE OF todo SKIP LOCKED))
                RETURNING jobs.*
            ), started AS (
                INSERT INTO pgjobs.event_log (job_id, type)
                SELECT ranked.id, 'started'::procrastinate_job_event_type
                  FROM (SELECT claimed.id,
                               row_number() OVER (ORDER BY claimed.priority DESC,
                                                           claimed.id ASC) AS rank
                          FROM claimed) AS ranked
                 WHERE p_start IS NULL OR ranked.rank <= p_start
                RETURNING event_log.job_id
            ), rolled AS (
                -- Their starts and waits (since each job's last ready event) in
                -- pgjobs.task_rollups, one row per task.
                INSERT INTO pgjobs.task_rollups AS rollup
                       (minute, task_name, bucket, shard, started, waited, wait_s)
                SELECT date_trunc('minute', now()), claimed.task_name, -2, pg_backend_pid() % 4,
                       count(*), count(ready.s), coalesce(sum(ready.s), 0)
                  FROM started
                  JOIN claimed ON claimed.id = started.job_id
                 CROSS JOIN LATERAL (
                       SELECT extract(epoch FROM now() - greatest(max(r.at) FILTER (
                            WHERE r.type IN ('deferred', 'deferred_for_retry', 'retried',
                                             'scheduled')
                              AND r.at <= now()), claimed.deferred_at))::double precision AS s
                         FROM pgjobs.event_log AS r
                        WHERE r.job_id = claimed.id) AS ready
                 GROUP BY claimed.task_name
                 ORDER BY claimed.task_name
                ON CONFLICT (minute, task_name, bucket, shard) DO UPDATE
                   SET started = rollup.started + excluded.started,
                       waited = rollup.waited + excluded.waited,
                       wait_s = rollup.wait_s + excluded.wait_s
            )
            SELECT * FROM claimed;
            PERFORM set_config('pgjobs.batch_events', 'off', true);
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
    WITH claimed AS (
        UPDATE procrastinate_jobs AS jobs
           SET status = 'doing', worker_id = p_worker_id
         WHERE jobs.id = ANY(ARRAY(
            SELECT todo.id
              FROM procrastinate_jobs AS todo
             WHERE todo.status = 'todo'
               AND (_queues IS NULL OR todo.queue_name = ANY(_queues))
               AND (_paused IS NULL OR todo.queue_name <> ALL(_paused))
               AND (todo.scheduled_at IS NULL OR todo.scheduled_at <= now())
               -- A probe per candidate (LIMIT: not a hash of every deadline).
               AND (NOT _deadlines
                    OR (SELECT 1
                          FROM pgjobs.job_deadlines AS deadline
                         WHERE deadline.job_id = todo.id
                           AND deadline.expires_at <= now()
                         LIMIT 1) IS NULL)
               AND (todo.lock IS NULL
                    OR ((SELECT 1
                           FROM procrastinate_jobs AS running
                          WHERE running.lock = todo.lock
                            AND running.status = 'doing'
                          LIMIT 1) IS NULL
                        AND todo.id = (SELECT first.id
                                         FROM procrastinate_jobs AS first
                                        WHERE first.lock = todo.lock
                                          AND first.status = 'todo'
                                        ORDER BY first.priority DESC, first.id ASC
                                        LIMIT 1)))
               -- Limited tasks' jobs: only through the branch above.
               AND (_limited IS NULL OR todo.task_name <> ALL(_limited))
             ORDER BY todo.priority DESC, todo.id ASC
             LIMIT greatest(p_limit, 0)
               FOR UPDATE OF todo SKIP LOCKED))
        RETURNING jobs.*
    ), started AS (
        INSERT INTO pgjobs.event_log (job_id, type)
        SELECT ranked.id, 'started'::procrastinate_job_event_type
          FROM (SELECT claimed.id,
                       row_number() OVER (ORDER BY claimed.priority DESC,
                                                   claimed.id ASC) AS rank
                  FROM claimed) AS ranked
         WHERE p_start IS NULL OR ranked.rank <= p_start
        RETURNING event_log.job_id
    ), rolled AS (
        -- Their starts and waits (since each job's last ready event) in
        -- pgjobs.task_rollups, one row per task.
        INSERT INTO pgjobs.task_rollups AS rollup
               (minute, task_name, bucket, shard, started, waited, wait_s)
        SELECT date_trunc('minute', now()), claimed.task_name, -2, pg_backend_pid() % 4,
               count(*), count(ready.s), coalesce(sum(ready.s), 0)
          FROM started
          JOIN claimed ON claimed.id = started.job_id
         CROSS JOIN LATERAL (
               SELECT extract(epoch FROM now() - greatest(max(r.at) FILTER (
                    WHERE r.type IN ('deferred', 'deferred_for_retry', 'retried',
                                     'scheduled')
                      AND r.at <= now()), claimed.deferred_at))::double precision AS s
                 FROM pgjobs.event_log AS r
                WHERE r.job_id = claimed.id) AS ready
         GROUP BY claimed.task_name
         ORDER BY claimed.task_name
        ON CONFLICT (minute, task_name, bucket, shard) DO UPDATE
           SET started = rollup.started + excluded.started,
               waited = rollup.waited + excluded.waited,
               wait_s = rollup.wait_s + excluded.wait_s
    )
    SELECT * FROM claimed;
    PERFORM set_config('pgjobs.batch_events', 'off', true);
END;
$$;

CREATE OR REPLACE FUNCTION pgjobs.finish_jobs(
    p_ids bigint[],
    p_statuses procrastinate_job_status[],
    p_delete boolean[],
    p_started_ids bigint[] DEFAULT '{}',
    p_worker_id bigint DEFAULT NULL
)
    RETURNS TABLE (job bigint, started boolean)
    LANGUAGE plpgsql
    SET jit = off
AS $$
DECLARE
    _done record;
    _shard smallint := pg_backend_pid() % 4;
BEGIN
    IF cardinality(p_started_ids) > 0 THEN
        -- Before batch_events is on: procrastinate's trigger writes their
        -- events, as for pgjobs.release_jobs.
        RETURN QUERY
        UPDATE procrastinate_jobs AS held
           SET status = 'todo', worker_id = NULL
         WHERE held.id = ANY(p_started_ids)
           AND held.status = 'doing'
           AND (p_worker_id IS NULL OR held.worker_id = p_worker_id)
           AND (EXISTS (SELECT FROM pgjobs.paused_queues AS paused
                         WHERE paused.queue_name = held.queue_name)
                OR EXISTS (SELECT FROM pgjobs.job_deadlines AS deadline
                            WHERE deadline.job_id = held.id
                              AND deadline.expires_at <= now()))
        RETURNING held.id, NULL::boolean;
    END IF;
    PERFORM set_config('pgjobs.batch_events', 'on', true);
    IF cardinality(p_started_ids) > 0 THEN
        RETURN QUERY
        WITH recorded AS (
            INSERT INTO pgjobs.event_log (job_id, type)
            SELECT doing.id, 'started'::procrastinate_job_event_type
              FROM procrastinate_jobs AS doing
             WHERE doing.id = ANY(p_started_ids)
               AND doing.status = 'doing'
               AND (p_worker_id IS NULL OR doing.worker_id = p_worker_id)
             ORDER BY doing.id
            RETURNING event_log.job_id
        ),
        rolled AS (
            INSERT INTO pgjobs.task_rollups AS rollup
                   (minute, task_name, bucket, shard, started, waited, wait_s)
            SELECT date_trunc('minute', now()), job.task_name, -2, _shard,
                   count(*), count(ready.s), coalesce(sum(ready.s), 0)
              FROM recorded
              JOIN procrastinate_jobs AS job ON job.id = recorded.job_id
             CROSS JOIN LATERAL (
                   SELECT extract(epoch FROM now() - greatest(max(r.at) FILTER (
                        WHERE r.type IN ('deferred', 'deferred_for_retry', 'retried',
                                         'scheduled')
                          AND r.at <= now()), job.deferred_at))::double precision AS s
                     FROM pgjobs.event_log AS r
                    WHERE r.job_id = recorded.job_id) AS ready
             GROUP BY job.task_name
             ORDER BY job.task_name
            ON CONFLICT (minute, task_name, bucket, shard) DO UPDATE
               SET started = rollup.started + excluded.started,
                   waited = rollup.waited + excluded.waited,
                   wait_s = rollup.wait_s + excluded.wait_s
        )
        SELECT recorded.job_id, true FROM recorded;
    END IF;
    FOR _done IN
        WITH finished AS (
            SELECT f.id, f.status, f.delete_job
              FROM unnest(p_ids, p_statuses, p_delete) AS f(id, status, delete_job)
             WHERE f.status IN ('succeeded', 'failed', 'aborted')
        ),
        current AS (
            SELECT jobs.id, jobs.status AS old_status
              FROM procrastinate_jobs AS jobs
             WHERE jobs.id = ANY(p_ids)
               AND jobs.status IN ('todo', 'doing')
               AND (p_worker_id IS NULL
                    OR (jobs.status = 'doing' AND jobs.worker_id = p_worker_id))
               FOR UPDATE OF jobs
        ),
        deleted AS (
            DELETE FROM procrastinate_jobs AS jobs
             USING finished, current
             WHERE finished.delete_job
               AND jobs.id = finished.id
               AND current.id = finished.id
            RETURNING jobs.id, jobs.task_name, finished.status, current.old_status
        ),
        updated AS (
            UPDATE procrastinate_jobs AS jobs
               SET status = finished.status,
                   -- A finished job keeps no worker (pgjobs.clear_job_worker).
                   worker_id = NULL,
                   abort_requested = false,
                   attempts = CASE current.old_status
                                  WHEN 'doing' THEN jobs.attempts + 1
                                  ELSE jobs.attempts
                              END
              FROM finished, current
             WHERE NOT finished.delete_job
               AND jobs.id = finished.id
               AND current.id = finished.id
            RETURNING jobs.id, jobs.status, current.old_status, jobs.task_name,
                      jobs.args ? 'timestamp' AS periodic
        ),
        -- procrastinate's status events (its row trigger is skipped while
        -- pgjobs.batch_events is on): doing -> succeeded/failed/aborted, and
        -- todo -> succeeded/failed is a cancellation.
        events AS (
            INSERT INTO pgjobs.event_log (job_id, type)
            SELECT updated.id,
                   CASE WHEN updated.old_status = 'doing'
                        THEN updated.status::text
                        ELSE 'cancelled'
                   END::procrastinate_job_event_type
              FROM updated
             WHERE updated.old_status = 'doing'
                OR updated.status IN ('succeeded', 'failed')
             ORDER BY updated.id
        ),
        -- Their run times: since each one's last 'started' event. Every
        -- probe of procrastinate_events here and below is by job_id alone,
        -- the rest filtered: a condition on type and at could make a generic
        -- plan walk the (type, at) index through every event instead.
        ended AS (
            SELECT attempt.task_name, attempt.status, run.s
              FROM (SELECT updated.id, updated.task_name, updated.status
                      FROM updated WHERE updated.old_status = 'doing'
                    UNION ALL
                    SELECT deleted.id, deleted.task_name, deleted.status
                      FROM deleted WHERE deleted.old_status = 'doing') AS attempt
             CROSS JOIN LATERAL (
                   SELECT extract(epoch FROM now() - max(s.at) FILTER (
                              WHERE s.type = 'started' AND s.at <= now()))::double precision
                              AS s
                     FROM pgjobs.event_log AS s
                    WHERE s.job_id = attempt.id) AS run
        ),
        -- Per task, the outcomes (bucket -1) and the run-time histogram.
        rolled AS (
            INSERT INTO pgjobs.task_rollups AS rollup
                   (minute, task_name, bucket, shard, runs, succeeded, failed, aborted,
                    timed, run_s, min_run_s, max_run_s)
            SELECT date_trunc('minute', now()), ended.task_name, -1, _shard,
                   count(*),
                   count(*) FILTER (WHERE ended.status = 'succeeded'),
                   count(*) FILTER (WHERE ended.status = 'failed'),
                   count(*) FILTER (WHERE ended.status = 'aborted'),
                   count(ended.s), coalesce(sum(ended.s), 0), min(ended.s), max(ended.s)
              FROM ended
             GROUP BY ended.task_name
            UNION ALL
            SELECT pgjobs.run_time_block(now()), ended.task_name,
                   pgjobs.run_time_bucket(ended.s), _shard, count(*), 0, 0, 0, 0, 0,
                   NULL, NULL
              FROM ended
             WHERE ended.s IS NOT NULL
             GROUP BY ended.task_name, pgjobs.run_time_bucket(ended.s)
             ORDER BY 3, 2
            ON CONFLICT (minute, task_name, bucket, shard) DO UPDATE
               SET runs = rollup.runs + excluded.runs,
                   succeeded = rollup.succeeded + excluded.succeeded,
                   failed = rollup.failed + excluded.failed,
                   aborted = rollup.aborted + excluded.aborted,
                   timed = rollup.timed + excluded.timed,
                   run_s = rollup.run_s + excluded.run_s,
                   min_run_s = least(rollup.min_run_s, excluded.min_run_s),
                   max_run_s = greatest(rollup.max_run_s, excluded.max_run_s)
        )
        SELECT deleted.id, false AS recorded, NULL::procrastinate_job_status AS status,
               NULL::text AS task_name, false AS periodic
          FROM deleted
        UNION ALL
        SELECT updated.id,
               updated.status IN ('succeeded', 'failed')
                   AND updated.old_status <> updated.status
                   AND (updated.periodic
                        OR EXISTS (SELECT 1 FROM pgjobs.schedule_runs AS run
                                    WHERE run.job_id = updated.id)),
               updated.status, updated.task_name::text, updated.periodic
          FROM updated
    LOOP
        IF _done.recorded THEN
            PERFORM pgjobs.record_job_outcome(
                _done.id, _done.status, _done.task_name, _done.periodic);
        END IF;
        job := _done.id;
        started := false;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('pgjobs.batch_events', 'off', true);
END;
$$;

DROP INDEX pgjobs_jobs_finished_idx;
ALTER TABLE pgjobs.event_log DROP COLUMN from_job;
ALTER TABLE procrastinate_jobs DROP COLUMN finished_at;
ALTER TABLE procrastinate_jobs DROP COLUMN started_at;
