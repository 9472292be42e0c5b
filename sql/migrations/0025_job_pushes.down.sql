-- 0025 job_pushes, undone: every new job is notified again.
DROP TRIGGER pgjobs_push_inserted_job ON procrastinate_jobs;
CREATE OR REPLACE FUNCTION pgjobs.notify_jobs_inserted()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    _queue record;
    _first bigint;
BEGIN
    -- A job inserted in another state than 'todo' (by hand) had no
    -- 'deferred' event, and has no deferred_at.
    IF EXISTS (SELECT FROM new_jobs WHERE status <> 'todo' AND deferred_at IS NOT NULL) THEN
        UPDATE procrastinate_jobs AS job SET deferred_at = NULL
          FROM new_jobs
         WHERE job.id = new_jobs.id AND new_jobs.status <> 'todo';
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

DROP FUNCTION pgjobs.unpush_jobs(bigint, bigint[]);
DROP FUNCTION pgjobs.count_pushed_starts(bigint, bigint[]);
DROP FUNCTION pgjobs.push_inserted_job();
DROP FUNCTION pgjobs.push_disarm(integer);
DROP FUNCTION pgjobs.push_arm(integer, bigint, character varying[]);
DROP FUNCTION pgjobs.push_listen();
DROP TABLE pgjobs.push_targets;
