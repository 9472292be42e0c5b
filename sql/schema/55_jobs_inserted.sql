-- Enqueueing in bulk: procrastinate's per-row insert triggers (two NOTIFYs
-- and one 'deferred' event INSERT per job) become one per-statement trigger
-- over the inserted rows: one NOTIFY per queue (plus one on the any-queue
-- channel) per statement, and no event row (the 'deferred' event is the
-- job's deferred_at column, 05_job_events.sql). Workers only read the
-- notification's type, so what they see is unchanged.
--
-- Notifying only when a worker waits (setting pgjobs.notify, default
-- 'waiting'). A transaction that has called pg_notify takes the
-- notification queue's lock at commit and keeps it until its commit is
-- flushed: concurrent enqueueing transactions commit one at a time (8
-- clients of single-job transactions: 2,081 jobs/s instead of 3,277). So
-- an enqueue notifies only when some worker waits for work, which the
-- workers say with two advisory locks (pgjobs.worker.wakeups):
--   A (1885825634, 1): held shared, on a session of its own, by every
--     worker that found its queues empty and waits for a notification;
--   E (1885825634, 2): held shared, until its transaction ends, by every
--     enqueueing transaction that does not notify (taken before it looks at
--     A the second time).
-- An enqueue that finds A free (twice) does not notify. A worker that takes A then
-- claims once more, after checking that no transaction holds E (a try of E
-- in exclusive mode): one that still holds E may have looked at A before
-- the worker took it and not notified, so the worker claims again every few
-- milliseconds until none does (pgjobs.worker.wakeups). Every lock here is
-- a try, except the worker's take of A: an enqueue never waits. 'always'
-- notifies on every enqueue, as procrastinate does (for listeners other
-- than pgjobs' workers); 'never' never does (workers poll).
CREATE FUNCTION pgjobs.wakeup_wanted()
    RETURNS boolean
    LANGUAGE plpgsql
AS $$
BEGIN
    CASE pgjobs.setting('pgjobs.notify', 'waiting')
        WHEN 'always' THEN RETURN true;
        WHEN 'never' THEN RETURN false;
        ELSE NULL;
    END CASE;
    IF NOT pg_try_advisory_lock(1885825634, 1) THEN
        RETURN true;  -- a worker waits
    END IF;
    PERFORM pg_advisory_unlock(1885825634, 1);
    -- None seemed to: hold E, then look again (a worker that begins to wait
    -- from now on finds E held until this transaction ends).
    IF NOT pg_try_advisory_xact_lock_shared(1885825634, 2) THEN
        RETURN true;  -- a worker is checking E this very moment
    END IF;
    IF pg_try_advisory_lock(1885825634, 1) THEN
        PERFORM pg_advisory_unlock(1885825634, 1);
        RETURN false;  -- no worker waits
    END IF;
    RETURN true;
END;
$$;

-- A worker waits for work (its session holds A until wakeups_disarm or
-- until it disconnects: a killed worker leaves nothing behind).
CREATE FUNCTION pgjobs.wakeups_arm()
    RETURNS void
    LANGUAGE sql
AS $$
    SELECT pg_advisory_lock_shared(1885825634, 1);
$$;

CREATE FUNCTION pgjobs.wakeups_disarm()
    RETURNS boolean
    LANGUAGE sql
AS $$
    SELECT pg_advisory_unlock_shared(1885825634, 1);
$$;

-- No enqueueing transaction is open (none holds E): every job enqueued by
-- a transaction that did not notify is committed or rolled back, so a claim
-- that starts now sees it.
CREATE FUNCTION pgjobs.wakeups_settled()
    RETURNS boolean
    LANGUAGE sql
AS $$
    SELECT pg_try_advisory_xact_lock(1885825634, 2);
$$;

CREATE FUNCTION pgjobs.notify_jobs_inserted()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    _queue record;
    _first bigint;
BEGIN
    -- A job inserted in another state than 'todo' (by hand) had no
    -- 'deferred' event, and has no deferred_at; a job pushed to a worker
    -- (57_job_pushes.sql) is inserted 'doing' and keeps its.
    IF EXISTS (SELECT FROM new_jobs
                WHERE status <> 'todo' AND deferred_at IS NOT NULL
                  AND id::text IS DISTINCT FROM current_setting('pgjobs.pushed_job', true)) THEN
        UPDATE procrastinate_jobs AS job SET deferred_at = NULL
          FROM new_jobs
         WHERE job.id = new_jobs.id AND new_jobs.status <> 'todo'
           AND new_jobs.id::text IS DISTINCT FROM current_setting('pgjobs.pushed_job', true);
    END IF;
    IF NOT EXISTS (SELECT FROM new_jobs WHERE status = 'todo')
       OR NOT pgjobs.wakeup_wanted() THEN
        RETURN NULL;
    END IF;
    FOR _queue IN
        SELECT queue_name, min(id) AS job_id
          FROM new_jobs
         WHERE status = 'todo'
         GROUP BY queue_name
    LOOP
        -- A channel name has at most 63 bytes: a queue whose name is longer
        -- than 40 bytes gets no channel of its own (procrastinate's per-row
        -- trigger failed the insert instead); the any-queue channel and
        -- polling still wake its workers.
        IF octet_length('procrastinate_queue_v1#' || _queue.queue_name) <= 63 THEN
            PERFORM pg_notify('procrastinate_queue_v1#' || _queue.queue_name,
                              json_build_object('type', 'job_inserted',
                                                'job_id', _queue.job_id)::text);
        END IF;
        _first := least(_first, _queue.job_id);
    END LOOP;
    IF _first IS NOT NULL THEN
        PERFORM pg_notify('procrastinate_any_queue_v1',
                          json_build_object('type', 'job_inserted',
                                            'job_id', _first)::text);
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER procrastinate_jobs_notify_queue_job_inserted_v1 ON procrastinate_jobs;
DROP TRIGGER procrastinate_trigger_status_events_insert_v1 ON procrastinate_jobs;
CREATE TRIGGER pgjobs_jobs_inserted
    AFTER INSERT ON procrastinate_jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT
    EXECUTE FUNCTION pgjobs.notify_jobs_inserted();
