-- Walked by pgjobs.fetch_jobs: two index probes per candidate job that has a
-- lock (procrastinate's anti-join form scans every waiting job: 19 s at 50,000).
CREATE INDEX pgjobs_jobs_lock_rank_idx
    ON procrastinate_jobs (lock, priority DESC, id)
    WHERE status = 'todo' AND lock IS NOT NULL;

-- Claim up to p_limit jobs: procrastinate_fetch_job_v2's candidates (todo,
-- queue filter, scheduled_at reached, a job with a lock only when no job of
-- that lock runs and no earlier or higher-priority job of that lock waits),
-- its order (priority DESC, id ASC) and its SKIP LOCKED claim, plus the
-- 'started' events. At most one job per lock is ever a candidate, so a
-- batch never holds two jobs of one lock.
-- Flow control (sql/schema/35_flow_control.sql): jobs of a paused queue are
-- no candidates (the queue filter loses the paused queues, and a claim left
-- with none returns at once; a claim of every queue skips their jobs as it
-- walks), and neither is a job whose start-by deadline has passed: a claim
-- that finds a deadline due first expires up to 100 such jobs. Nothing
-- paused and no deadline due: two index probes per claim.
-- p_start: how many of them (the first, in that order) start now and get
-- their 'started' event; NULL: all. The others are prefetched (see
-- pgjobs.job_worker): 'doing' without a 'started' event until the worker
-- starts them (pgjobs.finish_jobs writes it then), which is how a rescue
-- tells a job that never started from one that was running.
-- Planned once per connection, not per call: a plan-cached PL/pgSQL body
-- with a generic plan (planning a claim cost more than running it: 0.55 ms
-- per claim with EXECUTE against 0.2 ms for procrastinate's own). The
-- claimed ids go through an array so the generic plan updates them by
-- primary key, and sorts and sequential scans are off so that, whatever
-- the table looked like when the plan was made, it walks the priority index
-- in order and stops at p_limit: a plan made while the table was nearly
-- empty (a worker started on a new database) would otherwise sort every
-- waiting job, or scan the whole table, once it has grown, until the next
-- ANALYZE (warmed on 50 rows, then at 85,000: 8.7 ms per claim and finish
-- of 10 jobs instead of 1.6 ms).
-- JIT is off: before PostgreSQL 18 a disabled plan node (the sort that ranks
-- the claimed jobs) costs 10^10, far above jit_above_cost, so a server built
-- with LLVM (JIT is on by default) compiled the statement on every claim:
-- 250-450 ms per claim of 10 jobs on PostgreSQL 15 instead of 1 ms.
CREATE FUNCTION pgjobs.fetch_jobs(
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
    PERFORM set_config('pgjobs.batch_events', 'on', true);
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
             ORDER BY todo.priority DESC, todo.id ASC
             LIMIT greatest(p_limit, 0)
               FOR UPDATE OF todo SKIP LOCKED))
        RETURNING jobs.*
    ), started AS (
        INSERT INTO procrastinate_events (job_id, type)
        SELECT ranked.id, 'started'::procrastinate_job_event_type
          FROM (SELECT claimed.id,
                       row_number() OVER (ORDER BY claimed.priority DESC,
                                                   claimed.id ASC) AS rank
                  FROM claimed) AS ranked
         WHERE p_start IS NULL OR ranked.rank <= p_start
    )
    SELECT * FROM claimed;
    PERFORM set_config('pgjobs.batch_events', 'off', true);
END;
$$;
